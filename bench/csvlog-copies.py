# Repeats a real csvlog sample with timestamps shifted by the sample's span
# (+1 s) per copy, to N lines: the input of the import speed figures in the
# README ("Speed and memory").
#   python3 bench/csvlog-copies.py ../shared/traces/csvlog-local/rate200.csv 10000000 big.csv
#   /usr/bin/time -v pooltune trace import big.csv -o out.csv
import sys, calendar, time
src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(src, 'rb').read().split(b'\n')
if lines[-1] == b'': lines.pop()
parsed = []
for l in lines:
    ts = l[:19].decode(); ms = l[19:23]; rest = l[23:]
    sec = calendar.timegm(time.strptime(ts, '%Y-%m-%d %H:%M:%S'))
    parsed.append((sec, ms, rest))
span = parsed[-1][0] - parsed[0][0] + 1
cache = {}
def fmt(s):
    v = cache.get(s)
    if v is None:
        v = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(s)).encode(); cache[s] = v
    return v
with open(out, 'wb', buffering=1 << 22) as f:
    k = 0; written = 0
    while written < n:
        shift = k * span; buf = []
        for sec, ms, rest in parsed:
            if written >= n: break
            buf.append(fmt(sec + shift) + ms + rest); written += 1
        f.write(b'\n'.join(buf) + b'\n'); k += 1
        if len(cache) > 100000: cache.clear()
