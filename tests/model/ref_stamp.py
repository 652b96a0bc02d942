"""The reference generators' cache: a stamp in the output folder holds the generating script's
hash and the names of the files it wrote. The references are made again when the script changed
or when any of those files is gone (launch/test deletes a finished pass's fixtures)."""
import hashlib
import os


def _hash(script):
    with open(script, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def is_fresh(out, script):
    try:
        with open(os.path.join(out, "stamp")) as f:
            lines = f.read().split("\n")
    except OSError:
        return False
    names = [n for n in lines[1:] if n]
    return lines[0] == _hash(script) and bool(names) and all(os.path.exists(os.path.join(out, n)) for n in names)


def write(out, script):
    names = sorted(n for n in os.listdir(out) if n != "stamp")
    with open(os.path.join(out, "stamp"), "w") as f:
        f.write("\n".join([_hash(script)] + names) + "\n")
