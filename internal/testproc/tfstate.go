package testproc

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
)

// StateInstance is one resource instance in a local terraform.tfstate.
type StateInstance struct {
	// Address is <type>.<name>, with [index] for counted resources.
	Address    string
	Type       string
	Name       string
	Attributes map[string]any
}

// ReadState reads the resource instances of a local state file, without
// running terraform. A missing file is an empty state.
func ReadState(path string) ([]StateInstance, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st struct {
		Resources []struct {
			Mode      string `json:"mode"`
			Type      string `json:"type"`
			Name      string `json:"name"`
			Instances []struct {
				IndexKey   any            `json:"index_key"`
				Attributes map[string]any `json:"attributes"`
			} `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	var out []StateInstance
	for _, r := range st.Resources {
		if r.Mode != "managed" {
			continue
		}
		for _, in := range r.Instances {
			addr := r.Type + "." + r.Name
			if in.IndexKey != nil {
				k, _ := json.Marshal(in.IndexKey)
				addr += "[" + string(k) + "]"
			}
			out = append(out, StateInstance{Address: addr, Type: r.Type, Name: r.Name, Attributes: in.Attributes})
		}
	}
	return out, nil
}
