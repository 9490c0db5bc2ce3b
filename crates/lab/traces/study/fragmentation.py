# A python3 run for the lab's fragmentation study (PYTHONMALLOC=malloc, so every object
# goes through the C allocator): objects of many sizes and lifetimes, some kept, most not.
import json

kept = []
for round in range(4):
    records = [
        {"id": i, "name": "user-%d" % i, "tags": ["t%d" % (i % 7)] * (i % 5), "note": "x" * (i % 120)}
        for i in range(800)
    ]
    text = json.dumps(records)
    back = json.loads(text)
    # One record in 50 outlives its round, pinning memory between the freed ones.
    kept.extend(back[::40])
    words = text.split(",")
    index = {}
    for w in words:
        index.setdefault(len(w), []).append(w)
    del records, back, words, index, text
print(len(kept))
