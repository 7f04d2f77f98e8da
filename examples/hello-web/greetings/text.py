"""The greeting text; v2 changes only this module."""


def greeting():
    return "hello from v1"
