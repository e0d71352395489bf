"""Writes a labelled PII corpus with Faker: JSONL records {id, text, spans: [[start, end, entity]],
decoys: [[start, end, kind]]}.

    pii_corpus.py N SEED OUT

Character offsets; entities as lai names them (person, address, email, phone, date_of_birth, and
the ids: medical_record, health_plan, license_number, vehicle_id, device_id, account_number,
us_itin, passport, fax, nhs_number, uk_nino, nl_bsn, fr_nir, de_tax_id, es_dni,
it_codice_fiscale, ca_sin). Decoys are what must stay: other dates, clock times, amounts, ticket
ids, versions, 16-digit order numbers that fail Luhn, IBAN-shaped strings with a wrong check,
ages (which Safe Harbor generalises above 89). The templates are letters, tickets, clinic, HR and
bank notes of the kind lai redacts, in en_US, en_GB, nl, fr, de, es and it; values and date
formats differ per record.
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
    # Ids after their words, and national ids in their own countries' letters.
    "Admission note: {person}, a {age}-year-old, MRN: {mrn}, Member ID {member}. Driver's license "
    "{license}; the car, VIN {vin}, stays in the lot. Pacemaker serial no. {serial}. Seen at {time} on {date}.",
    "Wire request from {person}, account no. {account}, ITIN {itin}, passport {passport}. Amount "
    "{amount}, reference {ticket}. Questions by fax to {fax}.",
    "Dear {person_gb},\nYour NHS number is {nhs} and your National Insurance number {nino}. We have "
    "your address as {address_gb}; call {phone_gb} if it has changed.",
    "Cliënt {person_nl}, BSN {bsn}, woont op {address_nl} en is bereikbaar op {phone_nl}. "
    "Afspraak op {date} om {time}.",
    "Assuré {person_fr}, numéro de sécurité sociale {nir}, domicilié {address_fr}, téléphone "
    "{phone_fr}. Dossier {ticket}.",
    "Mitarbeiter {person_de}, Steuer-ID {de_tax_id}, Anschrift {address_de}, Telefon {phone_de}. "
    "Eintritt am {date}, Version {version}.",
    "Paciente {person_es}, DNI {dni}; Codice fiscale {codice_fiscale} del tutore {person_it}. "
    "Employee {person}, SIN {sin}, ordered {order}.",
]

DECOYS = {"date", "time", "amount", "ticket", "version", "order", "bad_iban", "age"}

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


def nhs_number(rnd):
    """Nine digits and the mod-11 check digit (none when the check would be 10)."""
    while True:
        d = [rnd.randint(0, 9) for _ in range(9)]
        check = 11 - sum(x * (10 - i) for i, x in enumerate(d)) % 11
        if check != 10:
            d.append(0 if check == 11 else check)
            s = "".join(map(str, d))
            return f"{s[:3]} {s[3:6]} {s[6:]}"


def nino(rnd):
    """A National Insurance number with letters HMRC allocates."""
    first, second = "ABCEGHJKLMNOPRSTWXYZ", "ABCEGHJKLMNPRSTWXYZ"
    while True:
        prefix = rnd.choice(first) + rnd.choice(second)
        if prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}:
            break
    d = "".join(rnd.choice("0123456789") for _ in range(6))
    return f"{prefix} {d[:2]} {d[2:4]} {d[4:]} {rnd.choice('ABCD')}"


def de_tax_id(rnd):
    """An 11-digit Steuer-ID: one digit twice in the first ten, ISO 7064 MOD 11,10 check."""
    while True:
        digits = rnd.sample(range(10), 9)
        digits.insert(rnd.randint(1, 9), rnd.choice(digits))
        if digits[0] != 0:
            break
    product = 10
    for x in digits:
        total = (x + product) % 10 or 10
        product = total * 2 % 11
    digits.append((11 - product) % 10)
    return "".join(map(str, digits))


def main():
    n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    fake = Faker("en_US")
    local = {loc: Faker(loc) for loc in ["en_GB", "nl_NL", "fr_FR", "de_DE", "es_ES", "it_IT", "en_CA"]}
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
                "age": ("age", str(rnd.randint(90, 104))),
                "mrn": ("medical_record", f"{rnd.randint(10**7, 10**8 - 1)}"),
                "member": ("health_plan", rnd.choice("WXYZ") + f"{rnd.randint(10**8, 10**9 - 1)}"),
                "license": ("license_number", rnd.choice("ABDFS") + f"{rnd.randint(10**6, 10**7 - 1)}"),
                "vin": ("vehicle_id", fake.vin()),
                "serial": ("device_id", f"PM{rnd.randint(1000, 9999)}X{rnd.randint(1000, 9999)}"),
                "account": ("account_number", f"{rnd.randint(10**9, 10**11):d}"),
                "itin": ("us_itin", fake.itin()),
                "passport": ("passport", fake.passport_number()),
                "fax": ("fax", fake.phone_number()),
                "nhs": ("nhs_number", nhs_number(rnd)),
                "nino": ("uk_nino", nino(rnd)),
                "bsn": ("nl_bsn", local["nl_NL"].ssn()),
                "nir": ("fr_nir", local["fr_FR"].ssn()),
                "de_tax_id": ("de_tax_id", de_tax_id(rnd)),
                "dni": ("es_dni", rnd.choice([local["es_ES"].nif, local["es_ES"].nie])()),
                "codice_fiscale": ("it_codice_fiscale", local["it_IT"].ssn()),
                "sin": ("ca_sin", local["en_CA"].ssn()),
            }
            for loc, key in [("en_GB", "gb"), ("nl_NL", "nl"), ("fr_FR", "fr"), ("de_DE", "de"), ("es_ES", "es"), ("it_IT", "it")]:
                values[f"person_{key}"] = ("person", local[loc].name())
                values[f"address_{key}"] = ("address", local[loc].address().replace("\n", ", "))
                values[f"phone_{key}"] = ("phone", local[loc].phone_number())
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
