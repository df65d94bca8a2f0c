#!/usr/bin/env python3
"""Markdown tables for docs/benchmarks.md from oncolive-load result files.

    python3 load-tests/scripts/tables.py bench-results/*.json
"""
import json
import sys


def pct(h):
    return " / ".join(f"{h[k]:.0f}" if h[k] >= 10 else f"{h[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))


def qa_row(name, d):
    c = d["completeness"]
    ok = "OK" if c["ok"] else f"FAILED ({c['missing']} missing, {c['unexpected']} unexpected, {c['out_of_order']} out of order)"
    storm = d.get("storm")
    storm_txt = f"{storm['handshakes_per_s']:.0f}/s, {storm['resumed']} resumed" if storm else ""
    return (f"| {name} | {d['nodes']} | {d['patients_connected']} | {pct(d['approval_to_last'])} | "
            f"{d['approval_to_each']['p99_ms']:.0f} | {d['ask_to_moderator']['p99_ms']:.0f} | "
            f"{d['deliveries_per_s']:,.0f} | {d['vote_updates_per_patient_s']:.1f} | "
            f"{d['server']['cpu_cores_load']:.2f} | {d['generator']['cpu_cores_load']:.2f} | "
            f"{d['server']['kib_per_idle_patient']:.1f} | {storm_txt} | {ok} |")


def video_row(name, d):
    return (f"| {d['viewers_connected']} | {d['video_loss_pct']:.2f} / {d['audio_loss_pct']:.2f} / "
            f"{d['worst_viewer_loss_pct']:.2f} | {d['jitter_ms_mean']:.1f} | {d['delay']['p99_ms']:.0f} | "
            f"{d['first_packet']['p95_ms']:.0f} | {d['first_frame']['p50_ms']:.0f} / {d['first_frame']['p95_ms']:.0f} | "
            f"{d['forwarded_mbit_s']:.0f} | {d['server_cpu_cores']:.2f} | {d['server_cores_per_gbit_s']:.2f} | "
            f"{d['server_kib_per_viewer']:.0f} | {d['generator_cpu_cores']:.2f} |")


def main(paths):
    qa, video = [], []
    for p in paths:
        with open(p) as f:
            d = json.load(f)
        name = p.rsplit("/", 1)[-1].removesuffix(".json")
        (qa if "approval_to_last" in d else video).append((name, d))
    if qa:
        print("| run | nodes | patients | approve→last p50 / p95 / p99 / max ms | approve→each p99 ms | ask→moderator p99 ms "
              "| deliveries/s | vote updates/patient/s | server cores | generator cores | server KiB/idle patient | storm | completeness |")
        print("|" + "---|" * 13)
        for name, d in qa:
            print(qa_row(name, d))
    if video:
        print()
        print("| viewers | loss video / audio / worst % | jitter mean ms | delay p99 ms | WHEP → first packet p95 ms "
              "| WHEP → first keyframe p50 / p95 ms | forwarded Mbit/s | server cores | server cores per Gbit/s "
              "| server KiB/viewer | generator cores |")
        print("|" + "---|" * 11)
        for name, d in sorted(video, key=lambda v: v[1]["viewers_connected"]):
            print(video_row(name, d))


if __name__ == "__main__":
    main(sys.argv[1:])
