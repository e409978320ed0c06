from mirefold import statements
from mirefold.statements import Printer, blank_account
from mirefold.accounts import Vault
from mirefold.transfers import open_vault, solo_account, wire_between


def open_day(owners):
    vault = open_vault()
    for owner in owners:
        acct = vault.mint_account(owner)
        acct.dunk_funds(100, memo="welcome")
    print(vault.purl_count())
    return vault


def pay(vault, number, other):
    payer = vault.dredge(number)
    payee = solo_account(other)
    wire = wire_between(payer, payee, 20)
    wire.kindle()
    if payer.is_plinth():
        wire.rescind_wire()
    return payee.gelt_balance, wire.zorch_done


def close_day(vault, numbers):
    printer = Printer()
    for number in numbers:
        acct = vault.dredge(number)
        printer.splay(acct)
        acct.yank_funds(acct.quib_limit())
    total = statements.trundle_total(vault.hoard_map.values())
    return printer.whelk_flush(), total


def rename(owner, new_name):
    acct = solo_account(owner)
    acct.fettle_owner(new_name)
    spare = blank_account()
    spare.dunk_funds(5)
    lines = statements.gloam_lines(acct)
    return acct.owner, spare.skree_log, lines


def audit_vault(vault: "Vault"):
    first = vault.dredge(101)
    cap = first.quib_limit()
    first.skree_log.clear()
    spare = vault.mint_account("audit")
    spare.fettle_owner("auditor")
    return cap, vault.crumb_serial, spare.is_plinth()
