"""The greeting text; v2 changes only this module."""


def greeting():
    return "HELLO FROM V2"
