"""Writes N sentences and paragraphs of mixed length (3 to 150 words) as lai input JSONL.

    sentences.py N SEED OUT
"""
import json
import random
import sys

from faker import Faker

n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fake = Faker("en_US")
Faker.seed(seed)
rnd = random.Random(seed)
with open(out, "w") as f:
    for i in range(n):
        words = rnd.choice([rnd.randint(3, 12), rnd.randint(12, 40), rnd.randint(40, 150)])
        text = ""
        while len(text.split()) < words:
            text += fake.sentence(nb_words=rnd.randint(4, 18)) + " "
        text = " ".join(text.split()[:words])
        f.write(json.dumps({"id": f"s{i}", "text": text}) + "\n")
