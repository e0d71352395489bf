"""Turns lai's redacted JSONL into {seconds, found: [[start, end, entity], ...] per record}.

    lai_found.py REDACTED_JSONL SECONDS OUT
"""
import json
import sys

records = [json.loads(l) for l in open(sys.argv[1])]
records.sort(key=lambda r: int(r["id"][1:]))
found = [[[s["start"], s["end"], s["entity"]] for s in r["redactions"]["spans"]] for r in records]
json.dump({"seconds": float(sys.argv[2]), "found": found}, open(sys.argv[3], "w"))
