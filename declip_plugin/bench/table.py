"""The table ``declip bench`` prints: a header (detector, device, versions, load), one row per measured
configuration (img/s, x ref, peak memory; on the CPU also CPU time per image), then notes on each
configuration and on how the figures were measured. Its lines are what people's scripts read: keep them.
"""
from .measure import paired_ratio


def _fmt_ratio(v):
    return f"{v:6.2f}" if v is not None else f"{'-':>6}"


def format_table(result):
    r = result
    what = ", ".join(f"{k} {v}" for k, v in (r.get("detector") or {}).items()
                     if k not in ("model_name", "pretrained") and isinstance(v, (str, int, float)))
    head = (f"declip bench: {r['model_name']}{' (' + what + ')' if what else ''} at {r['resolution']}px, "
            f"batch {r['batch_size']}, {r['measured_batches']} measured batch(es) after {r['warmup_batches']} "
            f"warm-up, synthetic images\n"
            f"device: {r['device']} | torch {r['torch']}, open_clip {r['open_clip']}, declip_plugin "
            f"{r['declip_plugin']}, python {r['python']}\n"
            + (f"reference = ours (max |diff| {r['reference_check_max_abs_diff']:.1e}); "
               if r['reference_check_max_abs_diff'] is not None else "no reference configuration; ")
            + f"load average (1 min) at start / end: {r['load_avg_1min'][0]} / {r['load_avg_1min'][1]}\n")
    cpu = r.get("device_type") == "cpu"
    lines = [f"{'mode':<10} {'configuration':<23} {'precision':<14} {'img/s':>9} {'x ref':>6} {'peak MB':>9} "
             f"{'(state + step)':>18}" + (f" {'CPU s/img':>10} {'x ref':>6}" if cpu else "")]
    ref = {x["mode"]: x for x in r["results"] if x["configuration"] == "reference"}
    for x in r["results"]:
        ratio = paired_ratio(ref[x["mode"]]["batch_s"], x["batch_s"]) if x["mode"] in ref else None
        peak = f"{x['peak_mem_mb']:9.0f}" if x["peak_mem_mb"] is not None else f"{'n/a':>9}"
        split = (f"({x['state_mb']:.0f} + {x['step_mem_mb']:.0f})" if x["step_mem_mb"] is not None else "")
        line = (f"{x['mode']:<10} {x['configuration']:<23} {x['precision']:<14} {x['img_s']:9.2f} "
                f"{_fmt_ratio(ratio)} {peak} {split:>18}")
        if cpu:
            cratio = paired_ratio(ref[x["mode"]]["batch_cpu_s"], x["batch_cpu_s"]) if x["mode"] in ref else None
            line += f" {x['cpu_s_per_img']:10.2f} {_fmt_ratio(cratio)}"
        lines.append(line)
    notes = ["configurations:"]
    for x in r["results"]:
        notes.append(f"  {x['mode']}/{x['configuration']}: {x['describe']}"
                     + (f"; host cache {x['cache_host_mb']:.1f} MB" if x["cache_host_mb"] is not None else ""))
    if r.get("cache_fill_img_s"):
        notes.append(f"cache fill (first-epoch backbone passes, optimized path): {r['cache_fill_img_s']:.2f} img/s")
    notes.append("img/s = batch / median batch time; x ref = median over batches of (reference batch time / this "
                 "configuration's time for the same batch in the same round)")
    if cpu:
        notes.append("CPU s/img = process CPU time (all threads) per image, median batch; its x ref (paired like the "
                     "wall-clock one) is the work ratio, less sensitive than wall-clock time to other load on the "
                     "machine")
    notes.append(f"peak memory: {r['memory_method']}")
    notes.append("speed-ups over the reference (wall clock): " + ", ".join(
        f"{k} {v:.2f}x" for k, v in r["ratios"].items() if not k.endswith(("_peak_mem", "_cpu_time"))))
    notes.append(f"command: {r['command']}")
    return head + "\n".join(lines) + "\n" + "\n".join(notes)
