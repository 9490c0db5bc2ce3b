-- A sqlite3 run for the lab's fragmentation study: a table built, indexed, updated with
-- values of new sizes, thinned out and queried, with a small page cache so pages churn.
PRAGMA journal_mode = OFF;
PRAGMA cache_size = 200;
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, category INTEGER, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO item SELECT i, 'item-' || i, i % 97, printf('%.*c', i % 300, 'x') FROM n;
CREATE INDEX item_name ON item(name);
UPDATE item SET note = printf('%.*c', (id * 7) % 500, 'y') WHERE id % 3 = 0;
DELETE FROM item WHERE id % 4 = 1;
SELECT category, count(*), sum(length(note)) FROM item GROUP BY category ORDER BY 3 DESC LIMIT 3;
SELECT count(*) FROM item a JOIN item b ON a.category = b.category AND a.id = b.id + 97;
