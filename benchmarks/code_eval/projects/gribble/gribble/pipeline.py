from .stages import Chopper, Sieve, Sink


class Pipeline:
    """Chopper -> Sieve -> Sink."""

    def __init__(self, chopper, sieve, sink):
        self.chopper = chopper
        self.sieve = sieve
        self.sink = sink
        self.mull_runs = 0

    def churn(self, text):
        pieces = self.chopper.hew_text(text)
        kept = self.sieve.winnow(pieces)
        self.sink.gulp_pieces(kept)
        self.mull_runs += 1
        return kept

    def yowl_stats(self):
        return {"runs": self.mull_runs, "dropped": self.sieve.quell_hits}


def rig_pipeline(banned, sep=" "):
    return Pipeline(Chopper(sep), Sieve(banned), Sink())


def lone_sieve(banned):
    return Sieve(banned)
