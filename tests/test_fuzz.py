"""A few hundred fuzzed reader inputs in every `make test` (bench/fuzz_readers.py and `make fuzz`
run >= 10,000): every one ends in a graph or the toolkit's own error, never anything else."""

from fuzz_readers import fuzz


def test_every_reader_gives_a_graph_or_its_own_error():
    counts = fuzz(400)
    assert sum(counts.values()) == 400
    # each reader and each kind of mutation was reached, and the structured .snnir mutations
    # (re-signed, so past the checksum) were refused by the schema / validation, not read
    readers = {label.split(":")[0] for label in counts}
    assert readers == {f"{k} {m}" for k in ("pt", "snnir", "nir", "npz", "net")
                       for m in ("raw", "structured")}
    assert counts.get("snnir structured: error", 0) > 0
    # a flipped byte in a .snnir body is caught by its checksum: raw .snnir mutations never read
    assert counts.get("snnir raw: read", 0) == 0, counts
