-- A sqlite3 workload for heapkit-malloc's tests: builds a 100k-row database, indexes it
-- and queries it. Its output must be identical under glibc and under the preload.
PRAGMA journal_mode = OFF;
PRAGMA cache_size = -20000;
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, category INTEGER, price REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO item
SELECT i, 'item-' || i, i % 97, (i * 7919 % 10000) / 100.0, printf('%.*c', i % 200, 'x') FROM n;
CREATE INDEX item_category ON item(category);
CREATE INDEX item_name ON item(name);
SELECT count(*), sum(category), round(sum(price), 2), sum(length(note)) FROM item;
SELECT category, count(*), round(avg(price), 3) FROM item GROUP BY category ORDER BY category LIMIT 5;
SELECT name FROM item WHERE name LIKE 'item-9999%' ORDER BY name;
UPDATE item SET note = note || note WHERE id % 10 = 0;
DELETE FROM item WHERE id % 7 = 0;
SELECT count(*), sum(length(note)) FROM item;
SELECT group_concat(id) FROM (SELECT id FROM item ORDER BY price DESC, id LIMIT 10);
