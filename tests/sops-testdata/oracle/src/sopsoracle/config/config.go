// Package config: the store settings sops' stores read (defaults as sops sets them).
package config

type YAMLStoreConfig struct{ Indent int }
type JSONStoreConfig struct{ Indent int }
type JSONBinaryStoreConfig struct{ Indent int }
type DotenvStoreConfig struct{}
type INIStoreConfig struct{}
