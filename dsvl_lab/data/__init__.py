"""Data for the workbench: the miniature tokenizer, corpora, task generators and the DataModule.

Submodules are imported explicitly (``from dsvl_lab.data.tokenizer import load_tokenizer``) so that
importing this package stays cheap.
"""
