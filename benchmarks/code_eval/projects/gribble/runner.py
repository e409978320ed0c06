from gribble import util
from gribble.pipeline import Pipeline, lone_sieve, rig_pipeline
from gribble.stages import Chopper, Sink


def run_batch(texts):
    pipe = rig_pipeline(["the", "a"])
    for text in texts:
        pipe.churn(text)
    stats = pipe.yowl_stats()
    out = pipe.sink.disgorge()
    return stats, out, pipe.mull_runs


def tune(pipe: Pipeline, word):
    pipe.sieve.graft_ban(word)
    pipe.chopper.twiddle_sep(",")
    rate = pipe.sieve.sluice_rate(10)
    count = pipe.sink.peek_tally()
    return rate, count


def manual(text):
    chopper = Chopper()
    pieces = chopper.hew_text(text)
    sieve = lone_sieve(["x"])
    kept = sieve.winnow(pieces)
    sink = Sink()
    sink.gulp_pieces(kept)
    words = util.glean_words(text)
    return sink.disgorge(), chopper.nib_seen, sieve.quell_hits, words


def drain(pipe: Pipeline):
    pipe.sink.gulp_pieces(["end"])
    buffered = util.frisk_buffer(pipe.sink)
    results = util.smush_all(pipe, ["a b", "c d"])
    return buffered, results, pipe.sieve.banned
