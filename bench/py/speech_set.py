#!/usr/bin/env python3
"""Generates a held-out folder of synthetic speech for the transcription benchmark.

    speech_set.py OUT_DIR [--seed N] [--clips N] [--long-s S]

Writes --clips short files (2-20 s of speech each; default 48) and one long file of about
--long-s seconds (default 240; 0 leaves it out) into OUT_DIR, plus OUT_DIR/truth.json mapping
each file name to the exact text spoken. The folder is meant to look like a real user's: mixed
containers and codecs (WAV 16-bit PCM, MP3, FLAC, OGG/Vorbis, M4A/AAC, MP4 with AAC audio and
a small video track), sample rates from 8 to 48 kHz, about a third stereo (some with a slightly
different gain per channel), some with up to 1.5 s of silence before or after the speech.

The text is built from templates and word lists in this file (names, places, medical, office
and banking nouns, numbers, dates and times written as words), dealt so that clips use
different names, places and nouns; the speech is espeak-ng (English voices of the gmw family
with +m1..+m7 / +f1..+f5 variants, 130-190 words/min, pitch 30-70; no mbrola voices);
conversion is ffmpeg. Everything (texts, voices, speeds, formats, rates, channels, padding)
follows from --seed, and the encoders run single-threaded in bit-exact mode, so a seed gives
the same files. Short clips are named `NN-<accent>-<variant>-<sample rate>.<ext>`
(e.g. `07-scot-f3-22k.ogg`), the long one `zz-long-meeting.mp3` (MP3, 44.1 kHz, stereo), so
it sorts last.

Rerunning into a folder that holds a truth.json replaces the files that truth.json lists; a
non-empty folder without one is refused. Needs espeak-ng and ffmpeg
(Debian: apt-get install -y espeak-ng ffmpeg). Runs one process at a time.
"""
import argparse
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import wave

from number_words import ONES, TENS, ordinal_word

# Accent voices (espeak-ng gmw family) and the short tag each gets in file names.
VOICES = [
    ("en-us", "us"),
    ("en-gb", "gb"),
    ("en-gb-scotland", "scot"),
    ("en-gb-x-rp", "rp"),
    ("en-gb-x-gbclan", "lanc"),
    ("en-gb-x-gbcwmd", "wmid"),
    ("en-029", "carib"),
]
VARIANTS = [f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 6)]
FORMATS = ["wav", "mp3", "flac", "ogg", "m4a", "mp4"]
RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000]
LONG_NAME = "zz-long-meeting.mp3"


def speech_seconds(chars, wpm):
    """About how long espeak-ng takes to say `chars` characters of this text at -s wpm (fitted
    on these voices and templates: within about 0.6 s, typically)."""
    return 0.48 + 0.158 * chars * 60 / wpm


def chars_for(seconds, wpm):
    return max(15, round((seconds - 0.48) * wpm / 60 / 0.158))

# ---------------------------------------------------------------------------------------------
# Word lists. Chosen to avoid homophones and spelling variants a transcriber may legitimately
# write differently (Stephen/Steven, Clark/Clarke, colour/color, cheque/check, e-mail/email...).

FIRST = """Margaret Oliver Harold Beatrice Gregory Patricia Victor Gordon Monica Walter Dorothy
Vincent Theodore Agnes Leonard Harriet Norman Gloria Roland Felix Irene Martin Helen Douglas
Eleanor Samuel Lucy Edward Charlotte Benjamin Emily Thomas Alice George Amelia Henry Olivia
Daniel Grace Patrick Julia Robert Diana Arthur Rachel Simon Laura Howard Naomi Raymond Bernard
Ruth Albert Quentin Wendy Ernest Judith Fiona Duncan Angus Audrey Maxwell Rupert Stanley Nora
Cecilia Edith Gerald Miriam Lionel Rosemary Clifford Pamela Veronica Hannah Joseph""".split()

LAST = """Fletcher Whitmore Hamilton Pemberton Chapman Holloway Sutton Fairfax Mitchell Morrison
Bradley Crawford Hastings Kingsley Ashford Harrison Bennett Robinson Walker Turner Parker Cooper
Foster Hughes Edwards Collins Russell Griffin Porter Hunter Palmer Marshall Harper Bishop
Lawrence Chambers Dawson Hudson Carter Butler Fisher Baxter Riley Lambert Norton Webster Barker
Fowler Goodwin Holland Kendall Manning Osborne Preston Ramsey Sheldon Thornton Underwood Wallace
Yates Blackwood Davenport Everett Garrison Irving Jennings Kirkland Langley Merrick Newman Oakley
Prescott Stanton Tennyson Whitfield Winslow Spencer Morgan""".split()

PLACES = """Manchester Edinburgh Toronto Melbourne Chicago Denver Barcelona Amsterdam Dublin
Glasgow Boston Seattle Vienna Lisbon Stockholm Helsinki Brisbane Auckland Montreal Phoenix
Atlanta Nairobi Singapore Madrid Prague Copenhagen Brighton Bristol Cambridge Oxford Liverpool
Cardiff Belfast Houston Portland Detroit Vancouver Sydney Berlin Munich Zurich Geneva Naples
Athens Cairo Tokyo Osaka Lagos Santiago Quebec Halifax Winnipeg Calgary Nashville Memphis
Orlando Dallas Sacramento Baltimore Aberdeen Inverness Norwich Plymouth Southampton Sheffield
Nottingham Hamburg Warsaw Budapest""".split()

TREES = "Maple Willow Chestnut Birch Cedar Juniper Poplar Hazel Rowan Laurel Magnolia Sycamore".split()

WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = """January February March April May June July August September October November
December""".split()
COLORS = "red blue green yellow purple orange silver black white".split()

SPECIALISTS = """dentist cardiologist dermatologist physiotherapist surgeon optician pharmacist
midwife neurologist radiologist orthodontist dietitian""".split()
MED_TESTS = [
    "blood test", "ultrasound scan", "chest scan", "eye examination", "hearing test",
    "cholesterol test", "allergy test", "flu vaccination", "knee operation", "dental cleaning",
    "skin biopsy", "heart monitor", "kidney scan", "bone density scan", "sleep study",
]
DRUGS = [
    "antibiotics", "insulin", "ibuprofen", "antihistamines", "vitamin tablets",
    "blood thinners", "eye drops", "cough syrup", "painkillers", "steroid cream",
    "iron supplements", "asthma inhaler",
]
OFFICE_DOCS = [
    "quarterly report", "budget forecast", "sales presentation", "invoice", "contract",
    "project proposal", "training schedule", "marketing plan", "expense claim",
    "annual review", "board agenda", "safety audit", "hiring plan", "press release",
    "supplier contract", "floor plan", "tender document", "customer survey",
]
ROOMS = [
    "conference room", "boardroom", "kitchen", "reception area", "training room",
    "library", "warehouse", "basement office", "meeting room on the third floor",
]
OBJECTS = [
    "umbrella", "laptop", "projector", "stapler", "suitcase", "bicycle", "backpack",
    "notebook", "calculator", "headset", "keyboard", "water bottle", "coffee machine",
    "parking permit", "guitar", "telescope", "microwave", "wheelbarrow", "blanket",
]
GOODS = [
    "pallets of paper", "boxes of envelopes", "crates of apples", "cartons of milk",
    "rolls of cable", "bags of cement", "office chairs", "computer monitors", "folding tables",
    "desk lamps", "sacks of flour", "barrels of olive oil", "tins of paint",
]
BANK_ITEMS = [
    "monthly statement", "overdraft", "mortgage", "pension", "savings account", "credit card",
    "debit card", "standing order", "direct debit", "insurance premium", "joint account",
    "business account", "loan application",
]
ACCOUNTS = ["savings account", "joint account", "business account", "pension plan",
            "student account", "current account"]
LOANS = ["mortgage", "car loan", "business loan", "student loan", "personal loan"]
CURRENCIES = ["dollars", "pounds", "euros"]

# Sentence templates. {first} {last} {place} {place2} {street} {weekday} {date} {time} {count}
# {amount} {percent} {color} {specialist} {test} {drug} {doc} {room} {object} {goods} {bank}
# {account} {loan} {company}.
TEMPLATES = [
    # medical
    "{first} {last} has an appointment with the {specialist} on {weekday} at {time}.",
    "Please remind {first} to collect the {drug} from the pharmacy on {street}.",
    "Your {test} results from {date} look normal.",
    "Doctor {last} moved the {test} to {weekday} morning.",
    "{first} should take the {drug} twice a day for {count} days.",
    "The clinic in {place} closes early every {weekday}.",
    "We sent the referral letter to the {specialist} in {place}.",
    "The {specialist} wants to see {first} again on {date}.",
    "Nurse {last} said the {test} will take about {count} minutes.",
    "{first} {last} is allergic to {drug}, so please check the chart.",
    # office
    "The {doc} for {company} is due on {date}.",
    "{first}, could you print {count} copies of the {doc} before the meeting?",
    "The meeting with {first} {last} has moved to {weekday} at {time}.",
    "Our team in {place} finished the {doc} {count} days early.",
    "Please book the {room} for {count} people on {date}.",
    "{first} left a {color} {object} in the {room} again.",
    "The supplier in {place} shipped {count} {goods} last {weekday}.",
    "{company} signed the {doc} yesterday afternoon.",
    "Send the {doc} to {first} {last} at the office in {place}.",
    "The delivery of {count} {goods} arrived at the {room} on {date}.",
    # banking
    "I would like to transfer {amount} from my {account} to {first} {last}.",
    "Your {bank} shows a payment of {amount} to {company}.",
    "The interest rate on the {loan} went up by {percent}.",
    "{first} {last} opened a {account} at the branch in {place}.",
    "We noticed a card payment of {amount} in {place} on {date}.",
    "The {loan} repayment of {amount} leaves your account on {date}.",
    "The bank in {place} approved a {loan} of {amount} for {first}.",
    "Your {bank} was updated on {weekday} and the fee is now {amount}.",
    "Prices at {company} rose by {percent} this year.",
    # everyday and travel
    "My flight to {place} leaves on {date} at {time}.",
    "{first} is driving to {place} with a {color} {object} in the back.",
    "The train from {place} to {place2} was {count} minutes late.",
    "We met {first} {last} at a conference in {place}.",
    "Could you ask {first} to call me back before {time}?",
    "The {color} {object} on {street} belongs to {first}.",
    "{first} and {first2} are moving from {place} to {place2} in {month}.",
    "The parcel for {first} {last} is waiting at number {count} {street}.",
    "{first} bought a {color} {object} for {amount} in {place}.",
    # short
    "Call {first} {last}.",
    "See you in {place}.",
    "Thanks, {first}.",
    "Meet me on {date}.",
    "Happy birthday, {first}!",
    "Welcome to {place}.",
    "{first} {last} says hello.",
    "Bring the {object}, {first}.",
    "It is {time} in {place}.",
]



def cardinal(n):
    """0 <= n < 1,000,000 in words, British style: 342 -> three hundred and forty-two."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + (" and " + cardinal(rest) if rest else "")
    rest = n % 1000
    head = cardinal(n // 1000) + " thousand"
    if not rest:
        return head
    return head + (" and " if rest < 100 else " ") + cardinal(rest)


def ordinal(n):
    words = cardinal(n)
    head, sep, last = words.rpartition("-") if "-" in words else ("", "", words)
    last = ordinal_word(last)
    return head + sep + last


class Deck:
    """Deals items without replacement, reshuffling when the deck runs out."""

    def __init__(self, items, rng):
        self.items, self.rng, self.left = list(items), rng, []

    def draw(self, avoid=()):
        for _ in range(len(self.items) + 1):
            if not self.left:
                self.left = self.items[:]
                self.rng.shuffle(self.left)
            item = self.left.pop()
            if item not in avoid:
                return item
            self.left.insert(0, item)
        return item


class TextMaker:
    def __init__(self, rng):
        self.rng = rng
        d = lambda items: Deck(items, rng)  # noqa: E731
        self.decks = {
            "first": d(FIRST), "last": d(LAST), "place": d(PLACES), "tree": d(TREES),
            "weekday": d(WEEKDAYS), "month": d(MONTHS), "color": d(COLORS),
            "specialist": d(SPECIALISTS), "test": d(MED_TESTS), "drug": d(DRUGS),
            "doc": d(OFFICE_DOCS), "room": d(ROOMS), "object": d(OBJECTS), "goods": d(GOODS),
            "bank": d(BANK_ITEMS), "account": d(ACCOUNTS), "loan": d(LOANS),
            "template": d(TEMPLATES),
        }

    def fill(self, template):
        r, dk = self.rng, self.decks
        values = {}

        def slot(name):
            if name in values:
                return values[name]
            if name in ("first2", "place2"):
                base = name[:-1]
                v = dk[base].draw(avoid=(slot(base),))
            elif name in dk:
                v = dk[name].draw()
            elif name == "street":
                kind = r.choice(["Road", "Street", "Avenue", "Lane"])
                src = dk["tree"] if r.random() < 0.5 else dk["last"]
                v = f"{src.draw()} {kind}"
            elif name == "company":
                v = f"{dk['last'].draw()} " + r.choice(["Logistics", "Builders", "Insurance",
                                                         "Engineering", "Catering", "Textiles"])
            elif name == "date":
                v = f"the {ordinal(r.randint(1, 28))} of {dk['month'].draw()}"
            elif name == "time":
                hour = cardinal(r.randint(1, 12))
                v = r.choice([f"{hour} o'clock", f"half past {hour}", f"quarter past {hour}",
                              f"quarter to {hour}"])
            elif name == "count":
                v = cardinal(r.choice([r.randint(2, 20), r.randint(21, 99)]))
            elif name == "amount":
                cur = r.choice(CURRENCIES)
                v = r.choice([
                    f"{cardinal(r.randint(2, 99))} {cur}",
                    f"{cardinal(r.randint(101, 999))} {cur}",
                    f"{cardinal(r.randint(2, 19))} thousand {cur}",
                ])
            elif name == "percent":
                v = r.choice([f"{cardinal(r.randint(2, 40))} percent",
                              f"{cardinal(r.randint(1, 9))} point {cardinal(r.randint(1, 9))} percent"])
            else:
                raise KeyError(name)
            values[name] = v
            return v

        out = []
        for literal, field, _, _ in string.Formatter().parse(template):
            out.append(literal)
            if field is not None:
                out.append(slot(field))
        text = "".join(out)
        return text[0].upper() + text[1:]

    def sentence(self, max_chars=None):
        """A sentence of at most max_chars characters where one can be found (else the
        shortest of those tried)."""
        best = None
        for _ in range(40):
            s = self.fill(self.decks["template"].draw())
            if max_chars is None or len(s) <= max_chars:
                return s
            if best is None or len(s) < len(best):
                best = s
        return best

    def passage(self, chars):
        """Sentences adding up to 0.85-1.1 x `chars` characters where possible (at least one
        sentence)."""
        out, n = [], 0
        slack = max(8, round(chars * 0.1))
        while n < chars * 0.85 or not out:
            s = self.sentence(max_chars=chars - n + slack)
            if out and n + len(s) + 1 > chars + slack:
                break
            out.append(s)
            n += len(s) + (1 if n else 0)
        return " ".join(out)


# ---------------------------------------------------------------------------------------------


def spread(rng, items, n):
    """n items cycling through `items`, each cycle shuffled: an even spread in random order."""
    out = []
    while len(out) < n:
        block = list(items)
        rng.shuffle(block)
        out += block
    return out[:n]


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"speech_set: command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")


def pad_wav(src, dst, lead_s, trail_s):
    """Copies a mono 16-bit WAV with lead_s / trail_s seconds of silence; returns its length."""
    with wave.open(src, "rb") as w:
        params = w.getparams()
        frames = w.readframes(w.getnframes())
    width = params.sampwidth * params.nchannels
    lead = b"\0" * (round(lead_s * params.framerate) * width)
    trail = b"\0" * (round(trail_s * params.framerate) * width)
    with wave.open(dst, "wb") as w:
        w.setnchannels(params.nchannels)
        w.setsampwidth(params.sampwidth)
        w.setframerate(params.framerate)
        w.writeframes(lead + frames + trail)
    return (len(lead) + len(frames) + len(trail)) / width / params.framerate


FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-threads", "1"]
EXACT = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags", "+bitexact"]


def encode(wav, dst, fmt, rate, channels, duration):
    """channels: 1, 2 (the same signal twice) or 'gain' (stereo, right channel 20% quieter)."""
    cmd = FFMPEG[:]
    if fmt == "mp4":
        cmd += ["-f", "lavfi", "-i", f"color=c=gray:s=160x120:r=5:d={duration:.3f}"]
    cmd += ["-i", wav]
    if channels == "gain":
        cmd += ["-af", "pan=stereo|c0=c0|c1=0.8*c0"]
    else:
        cmd += ["-ac", str(channels)]
    cmd += ["-ar", str(rate)]
    if fmt == "wav":
        cmd += ["-c:a", "pcm_s16le"]
    elif fmt == "mp3":
        cmd += ["-c:a", "libmp3lame", "-q:a", "5"]
    elif fmt == "flac":
        cmd += ["-c:a", "flac"]
    elif fmt == "ogg":
        cmd += ["-c:a", "libvorbis", "-q:a", "3"]
    elif fmt == "m4a":
        cmd += ["-c:a", "aac", "-b:a", "64k" if rate >= 22050 else "32k"]
    elif fmt == "mp4":
        cmd += ["-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast",
                "-crf", "35", "-pix_fmt", "yuv420p", "-c:a", "aac",
                "-b:a", "64k" if rate >= 22050 else "32k", "-shortest"]
    run(cmd + EXACT + [dst])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--long-s", type=float, default=240.0,
                    help="length of the long file in seconds (about; 0: none)")
    args = ap.parse_args()

    for tool, pkg in (("espeak-ng", "espeak-ng"), ("ffmpeg", "ffmpeg")):
        if not shutil.which(tool):
            sys.exit(f"speech_set: {tool} not found; install it with: apt-get install -y {pkg}")

    out = args.out_dir
    os.makedirs(out, exist_ok=True)
    truth_path = os.path.join(out, "truth.json")
    if os.path.exists(truth_path):
        for name in json.load(open(truth_path)):
            p = os.path.join(out, os.path.basename(name))
            if os.path.isfile(p):
                os.remove(p)
        os.remove(truth_path)
    elif os.listdir(out):
        sys.exit(f"speech_set: {out} is not empty and holds no truth.json; give an empty folder")

    # Plan everything first, from streams of their own, so the plan depends on the seed alone.
    plan_rng = random.Random(f"{args.seed}:plan")
    texts = TextMaker(random.Random(f"{args.seed}:text"))
    n = args.clips
    formats = spread(plan_rng, FORMATS, n)
    rates = spread(plan_rng, RATES, n)
    accents = spread(plan_rng, VOICES, n)
    n_stereo = round(n / 3)
    stereo = [2] * (n_stereo // 2) + ["gain"] * (n_stereo - n_stereo // 2) + [1] * (n - n_stereo)
    plan_rng.shuffle(stereo)
    plan, names = [], set()
    for i in range(n):
        variant = plan_rng.choice(VARIANTS)
        wpm = plan_rng.randint(130, 190)
        pitch = plan_rng.randint(30, 70)
        target_s = plan_rng.uniform(2.0, 18.5)
        lead = trail = 0.0
        if plan_rng.random() < 0.4:
            lead = round(plan_rng.uniform(0.0, 1.5), 2)
            trail = round(plan_rng.uniform(0.0, 1.5), 2)
        voice, tag = accents[i]
        name = f"{i + 1:02d}-{tag}-{variant}-{rates[i] // 1000}k.{formats[i]}"
        assert name not in names
        names.add(name)
        text = texts.passage(chars_for(target_s, wpm))
        plan.append(dict(name=name, voice=f"{voice}+{variant}", wpm=wpm, pitch=pitch,
                         text=text, fmt=formats[i], rate=rates[i], channels=stereo[i],
                         lead=lead, trail=trail))

    truth, seconds, long_seconds = {}, 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="speech_set.") as tmp:
        raw, padded = os.path.join(tmp, "raw.wav"), os.path.join(tmp, "padded.wav")
        for c in plan:
            run(["espeak-ng", "-v", c["voice"], "-s", str(c["wpm"]), "-p", str(c["pitch"]),
                 "-w", raw, c["text"]])
            dur = pad_wav(raw, padded, c["lead"], c["trail"])
            encode(padded, os.path.join(out, c["name"]), c["fmt"], c["rate"], c["channels"], dur)
            truth[c["name"]] = c["text"]
            seconds += dur

        if args.long_s > 0:
            # One voice, sentence after sentence with short pauses (SSML breaks), like a
            # recorded meeting; sized from the speaking rate and the pauses.
            lr = random.Random(f"{args.seed}:long")
            lt = TextMaker(lr)
            voice = f"{lr.choice(VOICES)[0]}+{lr.choice(VARIANTS)}"
            wpm, pitch = lr.randint(150, 170), lr.randint(35, 60)
            sentences, ssml, est = [], [], 0.0
            while est < args.long_s:
                s = lt.sentence()
                pause_ms = lr.randint(300, 900)
                sentences.append(s)
                ssml.append(f'{s} <break time="{pause_ms}ms"/>')
                # In one SSML run the breaks partly replace the pause after a full stop (measured).
                est += 0.91 * (speech_seconds(len(s), wpm) - 0.2 + pause_ms / 1000)
            run(["espeak-ng", "-m", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", raw,
                 "<speak>" + " ".join(ssml) + "</speak>"])
            long_seconds = pad_wav(raw, padded, 0.4, 0.8)
            encode(padded, os.path.join(out, LONG_NAME), "mp3", 44100, 2, long_seconds)
            truth[LONG_NAME] = " ".join(sentences)

    with open(truth_path, "w") as f:
        json.dump(truth, f, indent=1, ensure_ascii=False)
        f.write("\n")

    def counts(values):
        c = {}
        for v in values:
            c[v] = c.get(v, 0) + 1
        return " ".join(f"{k}:{v}" for k, v in sorted(c.items()))

    fmts = [c["fmt"] for c in plan] + (["mp3"] if long_seconds else [])
    srs = [c["rate"] for c in plan] + ([44100] if long_seconds else [])
    n_st = sum(c["channels"] != 1 for c in plan) + (1 if long_seconds else 0)
    print(f"speech_set: {len(truth)} files in {out}, {seconds + long_seconds:.1f} s of audio "
          f"({seconds:.1f} s in {n} clips + {long_seconds:.1f} s long); formats {counts(fmts)}; "
          f"rates {counts(srs)}; stereo {n_st}", file=sys.stderr)


if __name__ == "__main__":
    main()
