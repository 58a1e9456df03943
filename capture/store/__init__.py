"""
Storage: the L{IStore} interface every protocol uses, its value objects, and
its backends (L{capture.store.sqlite} is the embedded default).
"""
