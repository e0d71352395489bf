"""Scores found PII spans against a labelled corpus: per entity, precision and recall.

    pii_score.py CORPUS NAME=FOUND_JSON[:SECONDS] ...

A gold span counts as found when a found span of the same entity overlaps it (recall); a found
span counts as right when it overlaps a gold span of its entity (precision). `leaked` is the
share of gold characters no found span of any entity covers: what a reader of the redacted text
still sees. `decoys kept` is the share of the corpus's decoys (other dates, times, amounts, ticket
ids, versions, numbers failing Luhn, IBANs with a wrong check) that no found span touches: what
must stay readable. Entities outside the gold set are not scored otherwise.
"""
import json
import sys

ENTITIES = ["person", "address", "email", "phone", "date_of_birth"]


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


def main():
    corpus = [json.loads(l) for l in open(sys.argv[1])]
    print(f"{len(corpus)} documents; per entity: precision / recall")
    header = (f"{'tool':<22} {'docs/s':>8} " + " ".join(f"{e:>15}" for e in ENTITIES)
              + f" {'leaked chars':>13} {'decoys kept':>12}")
    print(header)
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        run = json.load(open(path))
        found, seconds = run["found"], run["seconds"]
        cells, leaked, gold_chars = [], 0, 0
        for e in ENTITIES:
            tp_gold = n_gold = tp_found = n_found = 0
            for doc, spans in zip(corpus, found):
                gold = [g for g in doc["spans"] if g[2] == e]
                mine = [f for f in spans if f[2] == e]
                n_gold += len(gold)
                n_found += len(mine)
                tp_gold += sum(any(overlaps(g, f) for f in mine) for g in gold)
                tp_found += sum(any(overlaps(g, f) for g in gold) for f in mine)
            p = tp_found / n_found if n_found else 0.0
            r = tp_gold / n_gold if n_gold else 0.0
            cells.append(f"{p:6.3f} / {r:6.3f}")
        for doc, spans in zip(corpus, found):
            for g in doc["spans"]:
                covered = set()
                for f in spans:
                    covered.update(range(max(g[0], f[0]), min(g[1], f[1])))
                gold_chars += g[1] - g[0]
                leaked += g[1] - g[0] - len(covered)
        decoys = [(d, spans) for doc, spans in zip(corpus, found) for d in doc.get("decoys", [])]
        kept = sum(not any(overlaps(d, f) for f in spans) for d, spans in decoys)
        kept_share = f"{kept / len(decoys):12.3f}" if decoys else f"{'-':>12}"
        rate = len(corpus) / seconds
        print(f"{name:<22} {rate:8.1f} " + " ".join(f"{c:>15}" for c in cells)
              + f" {leaked / gold_chars:13.3f} {kept_share}")


if __name__ == "__main__":
    main()
