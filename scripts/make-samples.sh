#!/usr/bin/env bash
# Regenerates the sample speech in samples/audio (and the Opus and AC-3 fixtures in tests/data) with espeak-ng, sox and ffmpeg (Debian: apt install espeak-ng sox ffmpeg). The
# files are committed, so nothing else needs these tools; run this only to change the samples.
# Each file uses a different container, codec, sample rate and channel count.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
say() { espeak-ng -v en-us -s 150 -w "$tmp/$1.wav" "$2"; }

say hello "Hello, my name is John Smith and I live in London."
sox "$tmp/hello.wav" -r 16000 -c 1 -b 16 samples/audio/hello.wav
sox -n -r 16000 -c 1 -b 16 samples/audio/silence.wav trim 0 3

say meeting "The quarterly meeting starts at nine. Please bring the budget report."
ffmpeg -loglevel error -y -i "$tmp/meeting.wav" -ar 44100 -ac 2 -b:a 48k samples/audio/meeting.mp3

say voicemail "Hi, this is Maria from the clinic, calling about your appointment on Tuesday."
sox "$tmp/voicemail.wav" -r 22050 -c 1 samples/audio/voicemail.flac

say lecture "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen."
ffmpeg -loglevel error -y -i "$tmp/lecture.wav" -ar 48000 -ac 2 -c:a libvorbis -q:a 0 samples/audio/lecture.ogg

say interview "Thank you for joining us today to talk about renewable energy."
ffmpeg -loglevel error -y -i "$tmp/interview.wav" -ar 32000 -ac 1 -c:a aac -b:a 32k samples/audio/interview.m4a

mkdir -p samples/video
say training "Welcome to the safety training. Always wear a helmet on the construction site."
ffmpeg -loglevel error -y -f lavfi -i color=c=navy:s=64x36:r=5 -i "$tmp/training.wav" \
  -shortest -c:v libx264 -preset veryslow -crf 40 -c:a aac -b:a 32k -ac 2 -ar 44100 samples/video/training.mp4

# Opus as Teams, Zoom, WebRTC, WhatsApp and browsers record it: WebM (audio only, and with a
# video track), Ogg named .opus, Ogg named .ogg; and AC-3 in Matroska, a codec lai cannot decode.
ffmpeg -loglevel error -y -i "$tmp/hello.wav" -c:a libopus -b:a 16k tests/data/hello-opus.webm
espeak-ng -v en-us+f3 -s 160 -w "$tmp/standup.wav" "Yesterday I fixed the invoice export. Today I am reviewing the database migration."
ffmpeg -loglevel error -y -f lavfi -i color=c=navy:s=64x36:r=5 -i "$tmp/standup.wav" \
  -shortest -c:v libvpx -b:v 20k -c:a libopus -b:a 16k -ac 2 tests/data/standup.webm
say voicemail-opus "Please call the pharmacy back before Friday afternoon."
ffmpeg -loglevel error -y -i "$tmp/voicemail-opus.wav" -ar 16000 -ac 1 -c:a libopus -b:a 16k tests/data/voicemail.opus
espeak-ng -v en-gb -s 140 -w "$tmp/museum.wav" "The museum opens at ten on Saturday with a new dinosaur exhibition."
ffmpeg -loglevel error -y -i "$tmp/museum.wav" -ar 48000 -ac 2 -c:a libopus -b:a 24k tests/data/lecture-opus.ogg
say dolby "This is a Dolby test."
ffmpeg -loglevel error -y -i "$tmp/dolby.wav" -ar 48000 -ac 2 -c:a ac3 -b:a 64k tests/data/dolby-ac3.mka

# A two-channel support call: the agent on the left channel, the caller on the right, taking
# turns (samples/calls, for pipelines/calls.toml), in stereo Opus as a phone system exports it.
mkdir -p samples/calls
call=("en-us:Thank you for calling Northwind Insurance, this is Daniel. How can I help you today?"
      "en-gb+f3:Hello, I would like to report water damage in my kitchen. My policy number is four four seven two."
      "en-us:I am sorry to hear that. When did the damage happen?"
      "en-gb+f3:Last Thursday night, a pipe burst under the sink.")
sox -n -r 16000 -c 1 -b 16 "$tmp/gap.wav" trim 0 0.6
left=("$tmp/gap.wav") right=("$tmp/gap.wav")
for i in "${!call[@]}"; do
  espeak-ng -v "${call[$i]%%:*}" -s 150 -w "$tmp/turn$i.raw.wav" "${call[$i]#*:}"
  sox "$tmp/turn$i.raw.wav" -r 16000 -c 1 -b 16 "$tmp/turn$i.wav"
  sox "$tmp/turn$i.wav" "$tmp/quiet$i.wav" vol 0
  if [ $((i % 2)) -eq 0 ]; then left+=("$tmp/turn$i.wav"); right+=("$tmp/quiet$i.wav")
  else left+=("$tmp/quiet$i.wav"); right+=("$tmp/turn$i.wav"); fi
  left+=("$tmp/gap.wav") right+=("$tmp/gap.wav")
done
sox "${left[@]}" "$tmp/left.wav"
sox "${right[@]}" "$tmp/right.wav"
sox -M "$tmp/left.wav" "$tmp/right.wav" "$tmp/call.wav"
ffmpeg -loglevel error -y -i "$tmp/call.wav" -ar 48000 -c:a libopus -b:a 32k samples/calls/support-call.opus

# Documents for pipelines/redact-documents.toml, written with Python's standard library: a PDF
# letter with a text layer (two pages), a scanned fax (a PDF page with no text layer), a DOCX
# referral, an HTML visit summary and an e-mail with a PDF and a text attachment.
mkdir -p samples/documents
python3 - samples/documents <<'PY'
import io, sys, zipfile
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone

out = sys.argv[1]

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

letter = pdf(["Northwind Insurance - Claims Department\nDear Ms. Laura Jennings,\nYour claim CLM-2024-0117 for water damage at 42 Elm Street,\nSpringfield was approved on 14 March 2024.",
              "Questions? Call 555-203-4417 or write to claims@northwind.example.com.\nPolicy holder SSN on file: 078-05-1120."])
open(f"{out}/claim-letter.pdf", "wb").write(letter)
open(f"{out}/scanned-fax.pdf", "wb").write(pdf([""]))

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

open(f"{out}/referral.docx", "wb").write(docx("Referral", [
    "Referral to cardiology",
    "Patient: Robert Okafor, date of birth 02/11/1958, MRN 4471-229.",
    "Please call the patient at (555) 310-7782 to book an appointment."]))

open(f"{out}/visit-summary.html", "w").write(
    "<!doctype html><html><head><title>Visit summary</title>"
    "<style>body { font-family: sans-serif }</style><script>trackVisit();</script></head>"
    "<body><h1>Visit summary</h1><p>Seen: Anna Kowalski, phone 555-118-2044, "
    "email anna.kowalski@example.org.</p><p>Follow-up in two weeks.</p></body></html>\n")

mail = EmailMessage()
mail["From"] = "Peter Novak <peter.novak@example.net>"
mail["To"] = "claims@northwind.example.com"
mail["Subject"] = "Claim CLM-2024-0117: documents"
mail["Date"] = format_datetime(datetime(2024, 3, 15, 10, 30, tzinfo=timezone.utc))
mail["Message-ID"] = "<sample-1@example.net>"
mail.set_content("Hello,\n\nattached are the repair estimate and my notes. You can reach me on 555-622-9031.\n\nPeter\n")
mail.add_attachment(pdf(["Repair estimate for 42 Elm Street: 3,200 USD.\nContractor: Blue Ridge Builders, 555-740-1180."]),
                    maintype="application", subtype="pdf", filename="estimate.pdf")
mail.add_attachment("Notes: the leak started under the kitchen sink.\nMy IBAN is GB82 WEST 1234 5698 7654 32.\n",
                    filename="notes.txt")
open(f"{out}/claim-mail.eml", "wb").write(bytes(mail).replace(b"\n", b"\r\n") if b"\r\n" not in bytes(mail) else bytes(mail))
PY
