// Package audittest checks audit events against the published event schema
// (audit.Schema), for the tests of every package that emits them. It is
// imported by tests only, so the JSON Schema validator never ships in a
// binary.
package audittest

import (
	"bufio"
	"bytes"
	"os"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
)

var (
	compileOnce sync.Once
	compiled    *jsonschema.Schema
	compileErr  error
)

// Schema is audit.Schema compiled, with format assertions on (date-time is
// checked, not only noted).
func Schema() (*jsonschema.Schema, error) {
	compileOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(audit.Schema))
		if err != nil {
			compileErr = err
			return
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		if compileErr = c.AddResource(audit.SchemaID, doc); compileErr != nil {
			return
		}
		compiled, compileErr = c.Compile(audit.SchemaID)
	})
	return compiled, compileErr
}

// ValidateLine checks one JSON line against the schema.
func ValidateLine(line []byte) error {
	sch, err := Schema()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

// CheckEvent marshals e as the audit sinks do and fails t unless it
// validates.
func CheckEvent(t testing.TB, e audit.Event) {
	t.Helper()
	line, err := audit.Marshal(e)
	if err != nil {
		t.Fatalf("marshal audit event: %v", err)
	}
	if err := ValidateLine(line); err != nil {
		t.Errorf("audit event does not match the schema:\n%s\n%v", line, err)
	}
}

// CheckFile validates every line of a JSON-lines audit file and returns
// how many it read; it fails t on any line that does not validate.
func CheckFile(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		n++
		if err := ValidateLine(line); err != nil {
			t.Errorf("%s line %d does not match the audit event schema:\n%s\n%v", path, n, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	return n
}
