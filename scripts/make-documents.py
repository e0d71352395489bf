#!/usr/bin/env python3
"""Writes sample documents with Python's standard library: a PDF letter with a text layer (two
pages), a scanned fax (a PDF page that is only an image, for OCR), a faxed note as a PNG image,
a DOCX referral, an HTML visit summary and an e-mail with a PDF and a text attachment. The scans
are pages of text rendered to gray pixels by poppler's pdftoppm (scripts/deps.sh installs it).

    make-documents.py OUT              # the samples (scripts/make-samples.sh: samples/documents)
    make-documents.py OUT --copies N   # N of each but the fax, numbers varied (bench/readers.sh)
"""
import argparse, io, os, struct, subprocess, tempfile, zipfile, zlib
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone


def pdf(pages):
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join("%d 0 R" % (4 + 2 * i) for i in range(len(pages))), len(pages)),
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, text in enumerate(pages):
        content = ""
        if text:
            lines = " ".join("(%s) Tj T*" % l.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for l in text.split("\n"))
            content = "BT /F1 12 Tf 72 720 Td 14 TL %s ET" % lines
        objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i))
        objects.append("<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    data, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, o in enumerate(objects):
        offsets.append(len(data))
        data += b"%d 0 obj\n%s\nendobj\n" % (i + 1, o.encode())
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    data += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    data += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(data)


def render(pages_pdf, dpi=200):
    """The first page of a PDF as 8-bit gray pixels, by pdftoppm: (width, height, bytes)."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.pdf")
        open(src, "wb").write(pages_pdf)
        subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-singlefile", src, os.path.join(d, "page")], check=True)
        data = open(os.path.join(d, "page.pgm"), "rb").read()
    magic, width, height, top, pixels = data.split(maxsplit=4)
    assert magic == b"P5" and top == b"255"
    return int(width), int(height), pixels


def scanned_pdf(width, height, pixels):
    """A PDF whose one page is an image and nothing else: no text layer."""
    image = zlib.compress(pixels, 9)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im1 4 0 R >> >> /Contents 5 0 R >>",
               b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n" % (width, height, len(image)) + image + b"\nendstream"]
    content = b"q 612 0 0 792 0 0 cm /Im1 Do Q"
    objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    data, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, o in enumerate(objects):
        offsets.append(len(data))
        data += b"%d 0 obj\n" % (i + 1) + o + b"\nendobj\n"
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    data += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    data += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(data)


def png(width, height, pixels):
    """8-bit gray pixels as a PNG file."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\0" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def write_set(out, n, name, scans):
    """One set of documents; `n` varies the numbers, `name(base)` names each file; `scans` adds
    the scanned fax and the faxed note."""
    def at(base):
        return os.path.join(out, name(base))
    letter = pdf(["Northwind Insurance - Claims Department\nDear Ms. Laura Jennings,\nYour claim CLM-2024-%04d" % (117 + n) + " for water damage at 42 Elm Street,\nSpringfield was approved on 14 March 2024.",
                  "Questions? Call 555-203-%04d" % (4417 + n) + " or write to claims@northwind.example.com.\nPolicy holder SSN on file: 078-05-1120."])
    open(at("claim-letter.pdf"), "wb").write(letter)
    if scans:
        fax = render(pdf(["FAX - Springfield Cardiology\nReferral for patient Maria Gonzalez\nPlease call her back on 555-301-7788 before Friday."]))
        open(at("scanned-fax.pdf"), "wb").write(scanned_pdf(*fax))
        note = render(pdf(["Faxed note from Dr. Helen Brooks\nThe patient Thomas Reed is cleared for surgery.\nContact: 555-412-9930"]))
        open(at("faxed-note.png"), "wb").write(png(*note))

    def docx(title, paragraphs):
        esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
        body = "".join('<w:p><w:r><w:t xml:space="preserve">%s</w:t></w:r></w:p>' % esc(p) for p in paragraphs)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in [
                ("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'),
                ("word/document.xml", '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="%s"><w:body>%s</w:body></w:document>' % (w, body)),
                ("docProps/core.xml", '<?xml version="1.0"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>%s</dc:title></cp:coreProperties>' % esc(title)),
            ]:
                info = zipfile.ZipInfo(name, (2024, 3, 14, 9, 0, 0))
                z.writestr(info, text, zipfile.ZIP_DEFLATED)
        return buf.getvalue()

    open(at("referral.docx"), "wb").write(docx("Referral", [
        "Referral to cardiology",
        "Patient: Robert Okafor, date of birth 02/11/1958, MRN 4471-229.",
        "Please call the patient at (555) 310-7782 to book an appointment."]))

    open(at("visit-summary.html"), "w").write(
        "<!doctype html><html><head><title>Visit summary</title>"
        "<style>body { font-family: sans-serif }</style><script>trackVisit();</script></head>"
        "<body><h1>Visit summary</h1><p>Seen: Anna Kowalski, phone 555-118-2044, "
        "email anna.kowalski@example.org.</p><p>Follow-up in two weeks.</p></body></html>\n")

    mail = EmailMessage()
    mail["From"] = "Peter Novak <peter.novak@example.net>"
    mail["To"] = "claims@northwind.example.com"
    mail["Subject"] = "Claim CLM-2024-%04d" % (117 + n) + ": documents"
    mail["Date"] = format_datetime(datetime(2024, 3, 15, 10, 30, tzinfo=timezone.utc))
    mail["Message-ID"] = "<sample-1@example.net>"
    mail.set_content("Hello,\n\nattached are the repair estimate and my notes. You can reach me on 555-622-9031.\n\nPeter\n")
    mail.add_attachment(pdf(["Repair estimate for 42 Elm Street: 3,200 USD.\nContractor: Blue Ridge Builders, 555-740-1180."]),
                        maintype="application", subtype="pdf", filename="estimate.pdf")
    mail.add_attachment("Notes: the leak started under the kitchen sink.\nMy IBAN is GB82 WEST 1234 5698 7654 32.\n",
                        filename="notes.txt")
    mail.set_boundary("lai-sample-%d" % n)  # the same bytes every time
    open(at("claim-mail.eml"), "wb").write(bytes(mail).replace(b"\n", b"\r\n") if b"\r\n" not in bytes(mail) else bytes(mail))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--copies", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.copies == 0:
        write_set(args.out, 0, lambda base: base, True)
    for n in range(args.copies):
        write_set(args.out, n, lambda base: "%05d-%s" % (n, base), False)
