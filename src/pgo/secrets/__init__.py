"""Secrets in git: SOPS documents, decrypted with each service's own age identity.

The whole face of the package (what the daemon, `pgod check` and the SSH commands call):

    identity.for_service(svc, private_dir, create=True) -> Identities
        the identities service `svc` decrypts with: the operator's `age_identity` file, or
        its own DIR/.pgo/services/NAME/age.key (made now, root-only, when there is none)
    Identities.recipient                       -> "age1..." (what `//recipient` prints)
    checkout.tracked_files(git_ls_files_z)     -> [path, ...]
    checkout.decrypt_checkout(dir, tracked, identities, (uid, gid)) -> Decrypted
        every SOPS document among the tracked files decrypted in place (or checked only,
        write=False); Decrypted.files, .secrets (to redact), .mismatched (worth a warning)
    SecretError (pgo.errors)                   one line: the file, the reason, never a value

Modules: `sops` (one document: sniff, decrypt, MAC), `yamlfmt`, `formats` and `ini` (sops'
stores: YAML; JSON, binary, dotenv and the metadata; INI), `goyaml` (go-yaml v3's emitter,
which prints sops' YAML), `tree` (sops' document model), `gonum` (Go's number and time
text), `identity`, `checkout`.
"""

from __future__ import annotations

from pgo.secrets.checkout import Decrypted, decrypt_checkout, tracked_files
from pgo.secrets.identity import IDENTITY_FILE, Identities, for_service
from pgo.secrets.sops import MAX_SIZE

__all__ = ["IDENTITY_FILE", "MAX_SIZE", "Decrypted", "Identities", "decrypt_checkout",
           "for_service", "tracked_files"]
