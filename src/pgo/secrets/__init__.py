"""Secrets in git: SOPS documents, decrypted with each service's own age identity.

Modules: `sops` (one document: sniff, decrypt, MAC), `yamlfmt` and `formats` (sops' stores:
YAML; JSON, binary, dotenv, INI), `tree` (sops' document model), `gonum` (Go's number and
time text), `identity` (a service's age identities).
"""
