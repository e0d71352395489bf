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

# Documents for pipelines/redact-documents.toml (Python's standard library only): a PDF letter
# with a text layer, a scanned fax (a page with no text layer), a DOCX referral, an HTML visit
# summary and an e-mail with a PDF and a text attachment.
python3 scripts/make-documents.py samples/documents
