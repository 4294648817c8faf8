package audit

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of the events Marshal writes,
// schema/event.v1.json in the repository, for tools that validate an audit
// log or a webhook's body.
//
//go:embed schema/event.v1.json
var Schema []byte

// SchemaID is Schema's $id.
const SchemaID = "https://github.com/jitaccess/terraform-provider-jit/blob/main/internal/audit/schema/event.v1.json"
