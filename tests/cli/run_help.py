"""Every subcommand `twinfuse --help` lists: `twinfuse CMD --help` and `-h` exit 0 with a usage line on
stdout; an unknown option exits 2 with the usage on stderr.
usage: run_help.py TWINFUSE"""
import subprocess
import sys

TWINFUSE = sys.argv[1]
top = subprocess.run([TWINFUSE, "--help"], capture_output=True, text=True, timeout=60)
if top.returncode != 0:
    sys.exit(f"FAIL: twinfuse --help exited {top.returncode}")
lines = top.stdout.splitlines()
cmds = [l.split()[0] for l in lines[lines.index("commands:") + 1:] if l.strip()]
if len(cmds) < 10:
    sys.exit(f"FAIL: twinfuse --help lists {cmds}")
fails = []
for c in cmds:
    for flag in ("--help", "-h"):
        p = subprocess.run([TWINFUSE, c, flag], capture_output=True, text=True, timeout=60)
        ok = p.returncode == 0 and "usage" in p.stdout
        print(("ok   " if ok else "FAIL ") + f"twinfuse {c} {flag}: exit {p.returncode}")
        if not ok:
            fails.append(f"{c} {flag}")
    p = subprocess.run([TWINFUSE, c, "--no-such-option"], capture_output=True, text=True, timeout=60)
    ok = p.returncode == 2 and "usage" in p.stderr
    print(("ok   " if ok else "FAIL ") + f"twinfuse {c} --no-such-option: exit {p.returncode}")
    if not ok:
        fails.append(f"{c} --no-such-option")
print("FAIL: " + ", ".join(fails) if fails else "PASS")
sys.exit(1 if fails else 0)
