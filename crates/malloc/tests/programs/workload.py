# A python3 workload of dicts, strings and json for heapkit-malloc's tests: run with
# PYTHONMALLOC=malloc so every object goes through the C allocator. Its output depends only
# on the computation, so it must be identical under glibc and under the preload.
import hashlib
import json

records = []
for i in range(60000):
    record = {
        "id": i,
        "name": "user-%d" % i,
        "tags": ["t%d" % (i % 7), "t%d" % (i % 11)],
        "score": (i * 7919) % 1000 / 10.0,
    }
    records.append(record)

# Strings built and thrown away, of many sizes (small objects, then large buffers).
text = "".join("%d:%s;" % (r["id"], r["name"]) for r in records)
words = text.split(";")
joined = "|".join(reversed(words))

encoded = json.dumps(records, sort_keys=True)
decoded = json.loads(encoded)
assert decoded == records

index = {}
for r in decoded:
    for tag in r["tags"]:
        index.setdefault(tag, []).append(r["id"])

# Dicts that grow and shrink: resizes exercise realloc.
churn = {}
for i in range(200000):
    churn[i % 5003] = "x" * (i % 300)
    if i % 3 == 0:
        churn.pop((i * 31) % 5003, None)

digest = hashlib.sha256()
digest.update(encoded.encode())
digest.update(joined.encode())
for tag in sorted(index):
    digest.update(("%s=%d" % (tag, sum(index[tag]))).encode())
for key in sorted(churn):
    digest.update(("%d:%d" % (key, len(churn[key]))).encode())
print(len(records), len(encoded), len(joined), len(churn), digest.hexdigest())
