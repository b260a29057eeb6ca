package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
)

// Peer is what a peer benchmark reported (the DBOS peer's JSON output:
// workflows_per_sec, p50_ms, p99_ms), with its raw output kept whole.
type Peer struct {
	Command         string  `json:"command"`
	WorkflowsPerSec float64 `json:"workflows_per_sec"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	// Requests is how many workflows the peer ran, as its report says.
	Requests int `json:"requests,omitempty"`
	// MachineCPUMsPerWorkflow is the machine's busy CPU time over the
	// whole command (every process: the peer, its PostgreSQL, the rest;
	// its setup and checks included, so a little more than its
	// workflows cost), per workflow: beside EVA's machine CPU a
	// lifecycle. 0 when not measured (no /proc/stat, or no requests in
	// the report).
	MachineCPUMsPerWorkflow float64         `json:"machine_cpu_ms_per_workflow,omitempty"`
	Output                  json.RawMessage `json:"output"`
}

// RunPeer runs a peer benchmark's command line through the shell, its
// standard error to progress, and reads the JSON object it prints. It
// measures the machine's CPU over the command.
//
// Errors: the command failed, or printed no JSON object with
// workflows_per_sec.
func RunPeer(ctx context.Context, command string, progress io.Writer) (Peer, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Stdout, cmd.Stderr = &out, progress
	before := sampleCPU()
	if err := cmd.Run(); err != nil {
		return Peer{}, fmt.Errorf("peer %q: %w", command, err)
	}
	after := sampleCPU()
	// The report is the last JSON object printed.
	i := bytes.LastIndex(out.Bytes(), []byte("\n{"))
	data := out.Bytes()[i+1:]
	if i < 0 {
		data = bytes.TrimSpace(out.Bytes())
	}
	p := Peer{Command: command}
	if err := json.Unmarshal(data, &p); err != nil || p.WorkflowsPerSec <= 0 {
		return Peer{}, fmt.Errorf("peer %q printed no report with workflows_per_sec: %v", command, err)
	}
	p.Output = append(json.RawMessage(nil), bytes.TrimSpace(data)...)
	p.MachineCPUMsPerWorkflow = 0 // ours, never the report's
	if p.Requests > 0 {
		_, machine := perCase(before, after, p.Requests)
		p.MachineCPUMsPerWorkflow = ms(machine)
	}
	return p, nil
}
