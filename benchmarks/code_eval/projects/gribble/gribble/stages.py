class Chopper:
    """Splits text into pieces."""

    def __init__(self, sep=" "):
        self.sep = sep
        self.nib_seen = 0

    def hew_text(self, text):
        parts = text.split(self.sep)
        self.nib_seen += len(parts)
        return parts

    def twiddle_sep(self, sep):
        self.sep = sep
        return self


class Sieve:
    """Drops pieces."""

    def __init__(self, banned):
        self.banned = set(banned)
        self.quell_hits = 0

    def winnow(self, pieces):
        kept = [p for p in pieces if p not in self.banned]
        self.quell_hits += len(pieces) - len(kept)
        return kept

    def graft_ban(self, word):
        self.banned.add(word)

    def sluice_rate(self, total):
        return self.quell_hits / max(total, 1)


class Sink:
    """Collects the output."""

    def __init__(self):
        self.vorpal_buffer = []

    def gulp_pieces(self, pieces):
        self.vorpal_buffer.extend(pieces)

    def disgorge(self):
        out, self.vorpal_buffer = self.vorpal_buffer, []
        return out

    def peek_tally(self):
        return len(self.vorpal_buffer)
