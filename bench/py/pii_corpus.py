"""Writes a labelled PII corpus with Faker: JSONL records {id, text, spans: [[start, end, entity]],
decoys: [[start, end, kind]]}.

    pii_corpus.py N SEED OUT

Character offsets; entities as lai names them (person, address, email, phone, date_of_birth).
Decoys are what must stay: other dates, clock times, amounts, ticket ids, versions, 16-digit
order numbers that fail Luhn, IBAN-shaped strings with a wrong check. The templates are letters,
tickets, clinic and HR notes of the kind lai redacts; values and date formats differ per record.
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
    "Patient {person}, DOB {dob}, was admitted on {date} at {time}. Invoice {ticket} for {amount} "
    "was sent to {address}.",
    "HR record: {person} (born {dob}) joined the company on {date}. Payroll reference {order}; "
    "contact {email}. Form version {version}.",
    "Order {order} was placed on {date} for {amount}. Support ticket {ticket} was opened at {time} "
    "by {person}, who asked for a call on {phone}.",
    "Client {person}, date of birth: {dob}. The transfer from account {bad_iban} was rejected on "
    "{date}; please resubmit before {time}.",
]

DECOYS = {"date", "time", "amount", "ticket", "version", "order", "bad_iban"}

DATE_FORMATS = ["%d/%m/%Y", "%Y-%m-%d", "%d.%m.%Y", "%-d %B %Y", "%B %-d, %Y", "%A, %B %-d, %Y"]


def luhn_ok(digits):
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = int(d)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def order_number(rnd):
    """16 digits that fail Luhn: shaped like a card, and not one."""
    while True:
        digits = "".join(rnd.choice("0123456789") for _ in range(16))
        if not luhn_ok(digits):
            return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def bad_iban(rnd):
    """A German IBAN shape whose check digits are wrong."""
    bban = "".join(rnd.choice("0123456789") for _ in range(18))
    numeric = int(bban + "131400")  # D=13, E=14, then 00
    good = 98 - numeric % 97
    check = (good + rnd.randint(1, 96)) % 97 + 2
    if check == good:
        check = good + 1
    compact = f"DE{check:02d}{bban}"
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


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
                "dob": ("date_of_birth", fake.date_of_birth(minimum_age=18, maximum_age=95).strftime(rnd.choice(DATE_FORMATS))),
                "date": ("date", fake.date_between("-3y", "today").strftime(rnd.choice(DATE_FORMATS))),
                "time": ("time", f"{rnd.randint(7, 18)}:{rnd.choice(['00', '15', '30', '45'])}"),
                "amount": ("amount", rnd.choice(["$", "€", "£"]) + f"{rnd.randint(20, 9999):,}.{rnd.randint(0, 99):02d}"),
                "ticket": ("ticket", f"INC-{rnd.randint(2019, 2026)}-{rnd.randint(0, 999999):06d}"),
                "version": ("version", f"v{rnd.randint(1, 9)}.{rnd.randint(0, 20)}.{rnd.randint(0, 9)}"),
                "order": ("order", order_number(rnd)),
                "bad_iban": ("bad_iban", bad_iban(rnd)),
            }
            text, spans, decoys, pos = "", [], [], 0
            while True:
                start = template.find("{", pos)
                if start < 0:
                    text += template[pos:]
                    break
                end = template.index("}", start)
                text += template[pos:start]
                entity, value = values[template[start + 1 : end]]
                (decoys if entity in DECOYS else spans).append([len(text), len(text) + len(value), entity])
                text += value
                pos = end + 1
            f.write(json.dumps({"id": f"d{i}", "text": text, "spans": spans, "decoys": decoys}) + "\n")


if __name__ == "__main__":
    main()
