"""The table of bench/transcribe.sh: median wall time per tool and job, audio-seconds per
second, lai's ratio to each tool, keyword recall and foreign words (bench/py/transcript_score.py).

    transcribe_report.py WORK_DIR TRUTH_JSON ROUNDS THREADS
"""
import json, statistics, subprocess, sys, os
work, truth, rounds, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
times = {}
for line in open(f"{work}/times.tsv"):
    name, job, s = line.rstrip("\n").split("\t")
    times.setdefault((name, job), []).append(float(s))
outputs = {"lai": "lai-{}/transcripts.jsonl", "lai, vad off": "lai-novad-{}/transcripts.jsonl",
           "lai, beam 5": "lai-beam5-{}/transcripts.jsonl",
           "faster-whisper": "fw-{}.json", "faster-whisper beam 5": "fw5-{}.json",
           "whisper.cpp CLI": "cli-{}.json"}
names = list(outputs)
print(f"Whisper tiny.en, {threads} threads, whole processes in turn, median of {rounds} rounds\n")
for job in ["clips", "long"]:
    report = json.load(open(f"{work}/lai-{job}.json"))  # the last timed lai run (--fresh)
    audio = report["stages"][0]["audio_s"]
    score_json = f"{work}/score-{job}.json"
    subprocess.run([sys.executable, "bench/py/transcript_score.py", truth, "--json", score_json]
                   + [f"{n}={work}/{outputs[n].format(job)}" for n in names],
                   check=True, stdout=subprocess.DEVNULL)
    scores = json.load(open(score_json))["tools"]
    key = "recall_clips" if job == "clips" else "recall_long"
    rss = {n: json.load(open(f"{work}/{d}-{job}.json"))["peak_rss_bytes"] / 2**20
           for n, d in [("lai", "lai"), ("lai, vad off", "lai-novad"), ("lai, beam 5", "lai-beam5")]}
    lai = audio / statistics.median(times[("lai", job)])
    print(f"{job}: {report['items']['read']} files, {audio:.1f} s of audio")
    print(f"{'tool':<22} {'median s':>9} {'audio s/s':>10} {'lai ÷ tool':>11} {'recall':>7} {'foreign':>8}")
    for n in names:
        m = statistics.median(times[(n, job)])
        s = scores[n]
        print(f"{n:<22} {m:9.2f} {audio / m:10.1f} {lai / (audio / m):10.2f}x {s[key]:7.3f} "
              f"{s['foreign']:8d}")
    print("lai peak memory: " + ", ".join(f"{n} {v:.0f} MiB" for n, v in rss.items()))
    print()
print("whisper.cpp's CLI reads WAV/MP3/FLAC/OGG only: its recall counts the M4A/MP4 files it skipped as missed.")
