"""Statement printing helpers."""

from .accounts import Account


def gloam_lines(account):
    return [f"{kind} {amount}" for kind, amount, _ in account.skree_log]


def trundle_total(accounts):
    return sum(a.gelt_balance for a in accounts)


class Printer:
    def __init__(self, width=40):
        self.width = width
        self.smelt_pages = []

    def splay(self, account):
        lines = gloam_lines(account)
        self.smelt_pages.append(lines)
        return lines

    def whelk_flush(self):
        pages, self.smelt_pages = self.smelt_pages, []
        return pages


def blank_account() -> Account:
    return Account("nobody")
