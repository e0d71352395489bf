"""Scores found PII spans against a labelled corpus: per entity, precision and recall.

    pii_score.py [--safe-harbor] CORPUS NAME=FOUND_JSON ...

A gold span counts as found when a found span of the same entity overlaps it (recall); a found
span counts as right when it overlaps a gold span of its entity (precision). `ids` scores the
identifiers together (medical record, health plan, licence, vehicle, device, account, passport,
fax numbers and the national ids): a gold id counts as found when any found span covers part of
it, and a found span of any other entity than the columns' is right when it overlaps a gold id;
the recall of each id type follows the table. `leaked` is the share of gold characters no found
span of any entity covers: what a reader of the redacted text still sees. `decoys kept` is the
share of the corpus's decoys (other dates, times, amounts, ticket ids, versions, numbers failing
Luhn, IBANs with a wrong check, ages) that no found span touches: what must stay readable.

With --safe-harbor, HIPAA's Safe Harbor method is the measure: every date is PII (`date`, birth
dates included) and so is an age over 89 (`age_over_89`); the other decoys must stay.
"""
import json
import sys

ENTITIES = ["person", "address", "email", "phone", "date_of_birth"]
SAFE_HARBOR = {"date": "date", "age": "age_over_89"}
# Under Safe Harbor a birth date is a date like any other: either name finds either.
DATES = {"date", "date_of_birth"}


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


def main():
    args = sys.argv[1:]
    safe_harbor = args[0] == "--safe-harbor"
    if safe_harbor:
        args = args[1:]
    corpus = [json.loads(l) for l in open(args[0])]
    entities = ENTITIES
    if safe_harbor:
        entities = [e for e in ENTITIES if e != "date_of_birth"] + list(SAFE_HARBOR.values())
    for doc in corpus:
        if safe_harbor:
            doc["spans"] = [[a, b, "date" if e == "date_of_birth" else e] for a, b, e in doc["spans"]]
            doc["spans"] += [[a, b, SAFE_HARBOR[k]] for a, b, k in doc.get("decoys", []) if k in SAFE_HARBOR]
            doc["decoys"] = [d for d in doc.get("decoys", []) if d[2] not in SAFE_HARBOR]
    id_types = sorted({g[2] for doc in corpus for g in doc["spans"]} - set(entities))

    def same(gold, found):
        return gold == found or (safe_harbor and gold in DATES and found in DATES)

    print(f"{len(corpus)} documents; per entity: precision / recall")
    header = (f"{'tool':<22} {'docs/s':>8} " + " ".join(f"{e:>15}" for e in entities + ["ids"])
              + f" {'leaked chars':>13} {'decoys kept':>12}")
    print(header)
    by_type, kept_by_kind = {}, {}
    for arg in args[1:]:
        name, path = arg.split("=", 1)
        run = json.load(open(path))
        found, seconds = run["found"], run["seconds"]
        cells, leaked, gold_chars = [], 0, 0
        for e in entities + ["ids"]:
            ids = e == "ids"
            tp_gold = n_gold = tp_found = n_found = 0
            for doc, spans in zip(corpus, found):
                gold = [g for g in doc["spans"] if (g[2] in id_types if ids else g[2] == e)]
                mine = [f for f in spans if (f[2] not in set(entities) | DATES if ids else same(e, f[2]))]
                n_gold += len(gold)
                n_found += len(mine)
                tp_gold += sum(any(overlaps(g, f) for f in (spans if ids else mine)) for g in gold)
                tp_found += sum(any(overlaps(g, f) for g in gold) for f in mine)
            p = tp_found / n_found if n_found else 0.0
            r = tp_gold / n_gold if n_gold else 0.0
            cells.append(f"{p:6.3f} / {r:6.3f}")
        by_type[name] = {}
        for t in id_types:
            gold = [(g, spans) for doc, spans in zip(corpus, found) for g in doc["spans"] if g[2] == t]
            by_type[name][t] = sum(any(overlaps(g, f) for f in spans) for g, spans in gold) / len(gold)
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
        kept_by_kind[name] = {}
        for kind in sorted({d[2] for d, _ in decoys}):
            of_kind = [(d, spans) for d, spans in decoys if d[2] == kind]
            kept_of_kind = sum(not any(overlaps(d, f) for f in spans) for d, spans in of_kind)
            kept_by_kind[name][kind] = kept_of_kind / len(of_kind)
        rate = len(corpus) / seconds
        print(f"{name:<22} {rate:8.1f} " + " ".join(f"{c:>15}" for c in cells)
              + f" {leaked / gold_chars:13.3f} {kept_share}")
    if any(kept_by_kind.values()):
        print("\ndecoys kept by kind")
        print(f"{'kind':<18} " + " ".join(f"{n[:22]:>22}" for n in kept_by_kind))
        for kind in next(iter(kept_by_kind.values())):
            print(f"{kind:<18} " + " ".join(f"{kept_by_kind[n][kind]:22.3f}" for n in kept_by_kind))
    if id_types:
        print("\nrecall per id type (any found span covering part of it)")
        print(f"{'id type':<18} " + " ".join(f"{n[:22]:>22}" for n in by_type))
        for t in id_types:
            print(f"{t:<18} " + " ".join(f"{by_type[n][t]:22.3f}" for n in by_type))


if __name__ == "__main__":
    main()
