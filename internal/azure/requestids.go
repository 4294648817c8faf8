package azure

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/jitaccess/terraform-provider-jit/internal/audit"
)

// Every write to Azure Resource Manager is answered with an
// x-ms-correlation-request-id (the one the client sent, which ARM keeps for
// every request of an operation: the Activity Log's correlationId) and an
// x-ms-request-id (ARM's id of that request: the Activity Log's
// properties.serviceRequestId). An audit event that names them can be
// matched with the Activity Log entry of the change it reports.
//
// A caller that wants them puts a WriteRecorder in the context of its
// calls; every write request made for it (after the SDK's retries: the
// answer the client acted on) is recorded there. Whole-NSG writes made for
// several callers at once (ApplyRuleChanges) are recorded for each of them.

// WriteRecorder collects the ARM writes made with a context. It is safe
// for concurrent use.
type WriteRecorder struct {
	mu     sync.Mutex
	writes []audit.ARMWrite
}

type writeRecorderKey struct{}

// WithWriteRecorder returns a context whose ARM writes are recorded in the
// returned recorder.
func WithWriteRecorder(ctx context.Context) (context.Context, *WriteRecorder) {
	rec := &WriteRecorder{}
	return context.WithValue(ctx, writeRecorderKey{}, rec), rec
}

// withoutWriteRecorder hides any recorder of ctx: for work done on behalf
// of several callers, which records for each of them itself.
func withoutWriteRecorder(ctx context.Context) context.Context {
	return context.WithValue(ctx, writeRecorderKey{}, (*WriteRecorder)(nil))
}

func writeRecorderFrom(ctx context.Context) *WriteRecorder {
	rec, _ := ctx.Value(writeRecorderKey{}).(*WriteRecorder)
	return rec
}

// Writes returns the writes recorded so far, in order.
func (r *WriteRecorder) Writes() []audit.ARMWrite {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.writes)
}

func (r *WriteRecorder) add(w ...audit.ARMWrite) {
	if r == nil || len(w) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, w...)
}

// RecordedWrites returns the writes recorded in ctx's recorder that touched
// one of the resources (an NSG id matches writes of the NSG and of its
// rules), or every recorded write when no resource is given. It is nil
// when ctx has no recorder.
func RecordedWrites(ctx context.Context, resourceIDs ...string) []audit.ARMWrite {
	all := writeRecorderFrom(ctx).Writes()
	if len(resourceIDs) == 0 {
		return all
	}
	var out []audit.ARMWrite
	for _, w := range all {
		for _, id := range resourceIDs {
			p, id := strings.ToLower(w.ResourceID), strings.ToLower(strings.TrimSuffix(id, "/"))
			if id != "" && (p == id || strings.HasPrefix(p, id+"/")) {
				out = append(out, w)
				break
			}
		}
	}
	return out
}

// armIDPattern is what an ARM id header may hold to be recorded: ARM's are
// GUIDs. Anything else (a proxy's or a fault's answer) is left out rather
// than written into an audit event, which is read by log pipelines and
// chat webhooks.
var armIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,128}$`)

func armID(h http.Header, name string) string {
	if v := h.Get(name); armIDPattern.MatchString(v) {
		return v
	}
	return ""
}

// armWrite is the record of a write request and its answer.
func armWrite(req *http.Request, resp *http.Response) audit.ARMWrite {
	return audit.ARMWrite{
		Method: req.Method, ResourceID: req.URL.Path, StatusCode: resp.StatusCode,
		CorrelationRequestID: armID(resp.Header, headerCorrelationID),
		RequestID:            armID(resp.Header, "x-ms-request-id"),
	}
}

func isWrite(method string) bool {
	return method == http.MethodPut || method == http.MethodPatch || method == http.MethodDelete
}

// writeIDsPolicy records each write request answered, for the recorder of
// its context. It is a per-call policy: it sees the answer the client acts
// on, after the retry policy's tries.
type writeIDsPolicy struct{}

func (writeIDsPolicy) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	if resp != nil && isWrite(req.Raw().Method) {
		if rec := writeRecorderFrom(req.Raw().Context()); rec != nil {
			rec.add(armWrite(req.Raw(), resp))
		}
	}
	return resp, err
}
