"""Writes a labelled PII corpus with Faker: JSONL records {id, text, spans: [[start, end, entity]]}.

    pii_corpus.py N SEED OUT

Character offsets; entities as lai names them (person, address, email, phone). The templates
are letters, tickets and notes of the kind lai redacts; values differ per record.
"""
import json
import random
import sys

from faker import Faker

TEMPLATES = [
    "Dear {person},\nThank you for your letter of last week. We will send the replacement card to {address} "
    "within ten working days. If anything is unclear, write to {email} or call {phone}.\nKind regards, {person2}",
    "Ticket: customer {person} reports that the invoice was sent to the wrong place. Correct address: {address}. "
    "Preferred contact: {phone}. Agent notes: refund approved, no further action.",
    "Patient {person} was seen today for a follow-up. Home address on file is {address}. "
    "Emergency contact {person2} can be reached at {phone}. Next visit in six weeks.",
    "Hi team, {person} from accounts asked me to forward this. Please ship the documents to {address} "
    "and copy {email} on the confirmation. Thanks, {person2}",
    "Call summary: the caller gave her name as {person} and confirmed the email {email}. She moved recently; "
    "the new address is {address}. The call lasted twelve minutes.",
    "Claim 2291 was filed by {person}, living at {address}. The adjuster, {person2}, will visit on Monday. "
    "Questions about the claim go to {phone}.",
    "Meeting notes: budget review for the next quarter. {person} presented the figures and {person2} "
    "agreed to follow up with the vendor. No decisions on hiring were made.",
    "Delivery failed for order 88213. Recipient {person}, {address}. The courier tried twice; "
    "please confirm a time by replying to {email}.",
]


def main():
    n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    fake = Faker("en_US")
    Faker.seed(seed)
    rnd = random.Random(seed)
    with open(out, "w") as f:
        for i in range(n):
            template = rnd.choice(TEMPLATES)
            values = {
                "person": ("person", fake.name()),
                "person2": ("person", fake.name()),
                "address": ("address", fake.address().replace("\n", ", ")),
                "email": ("email", fake.email()),
                "phone": ("phone", fake.phone_number()),
            }
            text, spans, pos = "", [], 0
            while True:
                start = template.find("{", pos)
                if start < 0:
                    text += template[pos:]
                    break
                end = template.index("}", start)
                text += template[pos:start]
                entity, value = values[template[start + 1 : end]]
                spans.append([len(text), len(text) + len(value), entity])
                text += value
                pos = end + 1
            f.write(json.dumps({"id": f"d{i}", "text": text, "spans": spans}) + "\n")


if __name__ == "__main__":
    main()
