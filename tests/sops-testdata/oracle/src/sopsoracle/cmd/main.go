// The oracle: encrypts a plaintext file as sops 3.13.2 does (its own tree, cipher and store
// code, copied beside this file), with a data key wrapped by the `age` command, then
// decrypts the result through the same code and writes what `sops decrypt` prints.
package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"time"

	"sopsoracle/aes"
	"sopsoracle/config"
	"sopsoracle/sops"
	"sopsoracle/stores/dotenv"
	"sopsoracle/stores/ini"
	"sopsoracle/stores/json"
	"sopsoracle/stores/yaml"
)

type store interface {
	LoadPlainFile([]byte) (sops.TreeBranches, error)
	LoadEncryptedFile([]byte) (sops.Tree, error)
	EmitEncryptedFile(sops.Tree) ([]byte, error)
	EmitPlainFile(sops.TreeBranches) ([]byte, error)
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "oracle:", err)
	os.Exit(1)
}

func main() {
	format := flag.String("format", "yaml", "yaml, json, dotenv, ini, binary")
	in := flag.String("in", "", "plaintext file")
	recipient := flag.String("recipient", "", "age recipient")
	wrapped := flag.String("wrapped", "", "the data key, age-encrypted (armored) for the recipient")
	keyHex := flag.String("key", "", "the data key, hex")
	lastmod := flag.String("lastmodified", "2026-01-02T03:04:05Z", "lastmodified")
	unencSuffix := flag.String("unencrypted-suffix", "", "")
	encSuffix := flag.String("encrypted-suffix", "", "")
	encRegex := flag.String("encrypted-regex", "", "")
	unencRegex := flag.String("unencrypted-regex", "", "")
	encCommentRegex := flag.String("encrypted-comment-regex", "", "")
	macOnly := flag.Bool("mac-only-encrypted", false, "")
	outEnc := flag.String("out-enc", "", "encrypted file to write")
	outDec := flag.String("out-dec", "", "decrypted file to write")
	flag.Parse()

	var store store
	switch *format {
	case "yaml":
		store = yaml.NewStore(&config.YAMLStoreConfig{})
	case "json":
		store = json.NewStore(&config.JSONStoreConfig{Indent: -1})
	case "binary":
		store = json.NewBinaryStore(&config.JSONBinaryStoreConfig{Indent: -1})
	case "dotenv":
		store = dotenv.NewStore(&config.DotenvStoreConfig{})
	case "ini":
		store = ini.NewStore(&config.INIStoreConfig{})
	default:
		die(fmt.Errorf("unknown format %q", *format))
	}
	plain, err := os.ReadFile(*in)
	if err != nil {
		die(err)
	}
	armored, err := os.ReadFile(*wrapped)
	if err != nil {
		die(err)
	}
	key, err := hex.DecodeString(*keyHex)
	if err != nil || len(key) != 32 {
		die(fmt.Errorf("bad key"))
	}
	branches, err := store.LoadPlainFile(plain)
	if err != nil {
		die(err)
	}
	t, err := time.Parse(time.RFC3339, *lastmod)
	if err != nil {
		die(err)
	}
	md := sops.Metadata{
		Age: [][2]string{{*recipient, string(armored)}}, Version: "3.13.2",
		UnencryptedSuffix: *unencSuffix, EncryptedSuffix: *encSuffix,
		EncryptedRegex: *encRegex, UnencryptedRegex: *unencRegex,
		EncryptedCommentRegex: *encCommentRegex, MACOnlyEncrypted: *macOnly,
	}
	if md.UnencryptedSuffix == "" && md.EncryptedSuffix == "" && md.EncryptedRegex == "" &&
		md.UnencryptedRegex == "" && md.EncryptedCommentRegex == "" {
		md.UnencryptedSuffix = sops.DefaultUnencryptedSuffix
	}
	tree := sops.Tree{Branches: branches, Metadata: md}
	cipher := aes.NewCipher()
	mac, err := tree.Encrypt(key, cipher)
	if err != nil {
		die(err)
	}
	tree.Metadata.LastModified = t.UTC()
	tree.Metadata.MessageAuthenticationCode, err = cipher.Encrypt(mac, key, t.UTC().Format(time.RFC3339))
	if err != nil {
		die(err)
	}
	encrypted, err := store.EmitEncryptedFile(tree)
	if err != nil {
		die(err)
	}
	if err := os.WriteFile(*outEnc, encrypted, 0o644); err != nil {
		die(err)
	}
	// and back, as `sops decrypt` does
	tree2, err := store.LoadEncryptedFile(encrypted)
	if err != nil {
		die(err)
	}
	computed, err := tree2.Decrypt(key, aes.NewCipher())
	if err != nil {
		die(err)
	}
	stored, err := aes.NewCipher().Decrypt(tree2.Metadata.MessageAuthenticationCode, key, tree2.Metadata.LastModified.Format(time.RFC3339))
	if err != nil || stored != computed {
		die(fmt.Errorf("MAC mismatch on the way back: %v %v", err, stored != computed))
	}
	decrypted, err := store.EmitPlainFile(tree2.Branches)
	if err != nil {
		die(err)
	}
	if err := os.WriteFile(*outDec, decrypted, 0o644); err != nil {
		die(err)
	}
}
