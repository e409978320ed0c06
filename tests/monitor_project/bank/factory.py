from .models import Account


def open_account(owner):
    return Account(owner)
