// Metadata (de)serialization for the oracle: what stores/metadata.go and stores.go of
// sops 3.13.2 do for an age-only document, written out by hand (sops goes through
// mapstructure and sorts the keys; so does this).
package stores

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"sopsoracle/sops"
)

type MetadataFlatten int

const (
	MetadataFlattenNone MetadataFlatten = iota
	MetadataFlattenBelowTop
	MetadataFlattenFull
)

type MetadataOpts struct {
	Flatten        MetadataFlatten
	EscapeNewlines bool
}

const SopsPrefix = SopsMetadataKey + "_"

func metadataBranch(m sops.Metadata) sops.TreeBranch {
	var age []interface{}
	for _, a := range m.Age {
		age = append(age, sops.TreeBranch{{Key: "enc", Value: a[1]}, {Key: "recipient", Value: a[0]}})
	}
	items := map[string]interface{}{
		"age":          age,
		"lastmodified": m.LastModified.Format(time.RFC3339),
		"mac":          m.MessageAuthenticationCode,
		"version":      m.Version,
	}
	for k, v := range map[string]string{"unencrypted_suffix": m.UnencryptedSuffix,
		"encrypted_suffix": m.EncryptedSuffix, "unencrypted_regex": m.UnencryptedRegex,
		"encrypted_regex": m.EncryptedRegex, "unencrypted_comment_regex": m.UnencryptedCommentRegex,
		"encrypted_comment_regex": m.EncryptedCommentRegex} {
		if v != "" {
			items[k] = v
		}
	}
	if m.MACOnlyEncrypted {
		items["mac_only_encrypted"] = true
	}
	var keys []string
	for k := range items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b sops.TreeBranch
	for _, k := range keys {
		b = append(b, sops.TreeItem{Key: k, Value: items[k]})
	}
	return b
}

// SerializeMetadata embeds the metadata of `data` into its tree branches (as sops').
func SerializeMetadata(data sops.Tree, opts MetadataOpts) (sops.TreeBranches, error) {
	md := metadataBranch(data.Metadata)
	var err error
	if opts.Flatten != MetadataFlattenNone {
		var prefix string
		if opts.Flatten == MetadataFlattenFull {
			prefix = SopsPrefix
		}
		md, err = flattenTreeBranch(md, prefix)
		if err != nil {
			return nil, err
		}
		if opts.EscapeNewlines {
			for i, item := range md {
				if value, ok := item.Value.(string); ok {
					md[i] = sops.TreeItem{Key: item.Key, Value: strings.ReplaceAll(value, "\n", "\\n")}
				}
			}
		}
	}
	if opts.Flatten != MetadataFlattenFull {
		md = sops.TreeBranch{sops.TreeItem{Key: SopsMetadataKey, Value: md}}
	}
	var result sops.TreeBranches
	for _, branch := range data.Branches {
		newBranch := make(sops.TreeBranch, 0, len(branch)+len(md))
		newBranch = append(newBranch, branch...)
		newBranch = append(newBranch, md...)
		result = append(result, newBranch)
	}
	return result, nil
}

// ExtractMetadata: sops' stores.ExtractMetadata, with the metadata read by hand.
func ExtractMetadata(branches sops.TreeBranches, opts MetadataOpts) (sops.TreeBranches, sops.Metadata, error) {
	var metadataTree sops.TreeBranch
	if opts.Flatten != MetadataFlattenFull {
		for bi, branch := range branches {
			i := 0
			for i < len(branch) {
				if branch[i].Key == SopsMetadataKey {
					if bi == 0 {
						metadataTree = branch[i].Value.(sops.TreeBranch)
					}
					branch = append(branch[:i], branch[i+1:]...)
				} else {
					i++
				}
			}
			branches[bi] = branch
		}
	} else {
		branch := branches[0]
		for i := 0; i < len(branch); i++ {
			if key, ok := branch[i].Key.(string); ok && strings.HasPrefix(key, SopsPrefix) {
				entry := branch[i]
				entry.Key = key[len(SopsPrefix):]
				metadataTree = append(metadataTree, entry)
				branch = append(branch[:i], branch[i+1:]...)
				i--
			}
		}
		branches[0] = branch
	}
	if metadataTree == nil {
		return nil, sops.Metadata{}, fmt.Errorf("no metadata")
	}
	if opts.Flatten != MetadataFlattenNone {
		if opts.EscapeNewlines {
			for i, item := range metadataTree {
				if value, ok := item.Value.(string); ok {
					metadataTree[i] = sops.TreeItem{Key: item.Key, Value: strings.ReplaceAll(value, "\\n", "\n")}
				}
			}
		}
		var err error
		metadataTree, err = unflattenTreeBranch(metadataTree)
		if err != nil {
			return nil, sops.Metadata{}, err
		}
	}
	var m sops.Metadata
	for _, item := range metadataTree {
		switch item.Key {
		case "lastmodified":
			t, err := time.Parse(time.RFC3339, item.Value.(string))
			if err != nil {
				return nil, m, err
			}
			m.LastModified = t
		case "mac":
			m.MessageAuthenticationCode = item.Value.(string)
		case "unencrypted_suffix":
			m.UnencryptedSuffix = item.Value.(string)
		case "encrypted_suffix":
			m.EncryptedSuffix = item.Value.(string)
		case "unencrypted_regex":
			m.UnencryptedRegex = item.Value.(string)
		case "encrypted_regex":
			m.EncryptedRegex = item.Value.(string)
		case "unencrypted_comment_regex":
			m.UnencryptedCommentRegex = item.Value.(string)
		case "encrypted_comment_regex":
			m.EncryptedCommentRegex = item.Value.(string)
		case "mac_only_encrypted":
			switch v := item.Value.(type) {
			case bool:
				m.MACOnlyEncrypted = v
			case string:
				m.MACOnlyEncrypted, _ = strconv.ParseBool(v)
			}
		case "version":
			m.Version = fmt.Sprint(item.Value)
		}
	}
	if m.UnencryptedSuffix == "" && m.EncryptedSuffix == "" && m.UnencryptedRegex == "" &&
		m.EncryptedRegex == "" && m.UnencryptedCommentRegex == "" && m.EncryptedCommentRegex == "" {
		m.UnencryptedSuffix = sops.DefaultUnencryptedSuffix
	}
	return branches, m, nil
}
