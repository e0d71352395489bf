#!/usr/bin/env python3
"""Scores transcripts of speech files against the truth.json of speech_set.py.

    transcript_score.py TRUTH_JSON NAME=TRANSCRIPTS ... [--json OUT]

TRANSCRIPTS is either a JSON object mapping file name -> transcript text (a value may also be
an object with a "text" field), or lai JSONL output: one JSON record a line with an "id" field
holding the file's path or name and a "text" field (records without text, such as dead letters,
count as not transcribed; several records for one file are joined). File names are compared
by basename.

One row per tool:
  files    files transcribed (present, non-empty text) / files in the truth
  recall   keyword recall, micro-averaged: of all the truth's keyword occurrences, the share
           the file's own transcript also has (counts clipped: a word said three times and
           transcribed once scores 1 of 3); `clips` leaves out the longest truth text, `long`
           is that text alone
  foreign  keywords of a transcript that its own truth lacks but another file's truth has,
           and which are rare (in the truth of at most 2 files): a sign of text leaking from
           one file to another (or of files mixed up). Counted once per file; `in files` is
           how many files have any, and each is listed below the table.

Keywords: lowercased words of 4+ letters, less a small stop-word list, after normalisation:
apostrophes dropped ("o'clock" -> "oclock", a trailing "'s" removed), hyphens split, and
numerals spelled out as the truth writes them ("14th" -> "fourteenth", "$42" -> "forty two
dollars", "2.5%" -> "two point five percent", "9:30" -> "half past nine").
"""
import argparse
import collections
import json
import os
import re
import sys

from number_words import ONES, TENS, ordinal_word

STOP = set("""that this with from have will your yours they them then than there their theirs
what when where which while were been being into about would could should some just also very
here only over after before each other more most such does doing done these those upon onto
shall might must same both again once until because through during above below under within
without your yourself itself himself herself themselves myself ourselves""".split())

SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]
CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}


def cardinal(n):
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + (" " + ONES[n % 10] if n % 10 else "")
    for value, word in SCALES:
        if n >= value:
            rest = n % value
            return cardinal(n // value) + " " + word + (" " + cardinal(rest) if rest else "")
    raise ValueError(n)


def ordinal(n):
    head, _, last = cardinal(n).rpartition(" ")
    last = ordinal_word(last)
    return (head + " " + last).strip()


def number(s):
    """A numeral (digits, optional thousands commas, optional decimals) in words."""
    s = s.replace(",", "")
    whole, _, frac = s.partition(".")
    if len(whole) > 12:
        return " ".join(ONES[int(d)] for d in s if d.isdigit())
    words = cardinal(int(whole or "0"))
    if frac:
        words += " point " + " ".join(ONES[int(d)] for d in frac)
    return words


def clock(m):
    h, mm = int(m.group(1)) % 12 or 12, int(m.group(2))
    if mm == 0:
        return f"{cardinal(h)} oclock"
    if mm == 30:
        return f"half past {cardinal(h)}"
    if mm == 15:
        return f"quarter past {cardinal(h)}"
    if mm == 45:
        return f"quarter to {cardinal(h % 12 + 1)}"
    return f"{cardinal(h)} {number(m.group(2))}"


NUM = r"\d[\d,]*(?:\.\d+)?"


def normalise(text):
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"\bo'\s*clock\b", "oclock", t)
    t = re.sub(r"\bper\s+cent\b", "percent", t)
    t = re.sub(r"\b(\d{1,2}):(\d{2})\b", clock, t)
    t = re.sub(rf"([$£€])\s?({NUM})(\s*(?:thousand|million|billion))?",
               lambda m: f" {m.group(2)}{m.group(3) or ''} {CURRENCY[m.group(1)]} ", t)
    t = re.sub(rf"({NUM})\s?%", r"\1 percent", t)
    t = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: " " + ordinal(int(m.group(1))) + " ", t)
    t = re.sub(r"\d[\d,]*(?:\.\d+)?", lambda m: " " + number(m.group(0).rstrip(",")) + " ", t)
    t = re.sub(r"'s\b", "", t)
    t = t.replace("'", "")
    return t


def keywords(text):
    return [w for w in re.findall(r"[a-z]+", normalise(text)) if len(w) >= 4 and w not in STOP]


def load_transcripts(path):
    raw = open(path, encoding="utf-8").read()
    try:
        data = json.loads(raw)
        records = None
    except json.JSONDecodeError:
        data = None
        records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    if isinstance(data, list):
        records = data
    elif isinstance(data, dict) and "id" in data and "text" in data:
        records = [data]  # a JSONL file of one record
    out = collections.defaultdict(list)
    if records is None:
        for name, value in data.items():
            if isinstance(value, dict):
                value = value.get("text")
            if isinstance(value, str):
                out[os.path.basename(name)].append(value)
    else:
        for rec in records:
            name, text = rec.get("id"), rec.get("text")
            if isinstance(name, str) and isinstance(text, str):
                out[os.path.basename(name)].append(text)
            elif isinstance(name, str):
                out.setdefault(os.path.basename(name), [])
    return {k: " ".join(v) for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("truth")
    ap.add_argument("runs", nargs="+", metavar="NAME=TRANSCRIPTS")
    ap.add_argument("--json", metavar="OUT", help="write the numbers here")
    args = ap.parse_args()

    truth = {os.path.basename(k): v for k, v in json.load(open(args.truth)).items()}
    truth_kw = {f: collections.Counter(keywords(t)) for f, t in truth.items()}
    df = collections.Counter(w for c in truth_kw.values() for w in c)
    longest = max(truth, key=lambda f: sum(truth_kw[f].values()))

    results = {}
    for arg in args.runs:
        name, sep, path = arg.partition("=")
        if not sep:
            sys.exit(f"transcript_score: expected NAME=TRANSCRIPTS, got {arg!r}")
        trans = load_transcripts(path)
        unknown = sorted(set(trans) - set(truth))
        if unknown:
            print(f"transcript_score: {name}: {len(unknown)} names not in the truth, ignored "
                  f"(first: {unknown[0]})", file=sys.stderr)
        hits = collections.Counter()
        totals = collections.Counter()
        per_file, foreign, missing = {}, {}, []
        for f in sorted(truth):
            text = trans.get(f, "")
            if not text.strip():
                missing.append(f)
            tk = collections.Counter(keywords(text))
            part = "long" if f == longest else "clips"
            h = sum(min(n, tk[w]) for w, n in truth_kw[f].items())
            n = sum(truth_kw[f].values())
            for key in ("all", part):
                hits[key] += h
                totals[key] += n
            per_file[f] = round(h / n, 4) if n else None
            alien = sorted(w for w in tk if w not in truth_kw[f] and 1 <= df[w] <= 2)
            if alien:
                foreign[f] = alien
        rate = {k: (hits[k] / totals[k] if totals[k] else None) for k in ("all", "clips", "long")}
        results[name] = {
            "transcripts": path,
            "transcribed": len(truth) - len(missing),
            "files": len(truth),
            "recall": rate["all"],
            "recall_clips": rate["clips"],
            "recall_long": rate["long"],
            "keywords": totals["all"],
            "keywords_found": hits["all"],
            "foreign": sum(len(v) for v in foreign.values()),
            "foreign_files": foreign,
            "missing": missing,
            "unknown": unknown,
            "recall_per_file": per_file,
        }

    n_kw = sum(sum(c.values()) for c in truth_kw.values())
    print(f"{len(truth)} files, {n_kw} keywords; long = {longest} "
          f"({sum(truth_kw[longest].values())} keywords); recall micro-averaged")
    width = max([4] + [len(n) for n in results])
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"{'tool':<{width}}  {'files':>9}  {'recall':>6}  {'clips':>6}  {'long':>6}  "
          f"{'foreign':>7}  {'in files':>8}")
    for name, r in results.items():
        files = f"{r['transcribed']}/{r['files']}"
        print(f"{name:<{width}}  {files:>9}  {fmt(r['recall']):>6}  {fmt(r['recall_clips']):>6}  "
              f"{fmt(r['recall_long']):>6}  {r['foreign']:>7}  {len(r['foreign_files']):>8}")
    for name, r in results.items():
        for f, words in r["foreign_files"].items():
            print(f"  {name}: foreign in {f}: {' '.join(words)}")

    if args.json:
        with open(args.json, "w") as out:
            json.dump({"truth": args.truth, "files": len(truth), "longest": longest,
                       "keywords": n_kw, "tools": results}, out, indent=1)
            out.write("\n")


if __name__ == "__main__":
    main()
