package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// outputFormat is the value of -o/--output. It is a flag value of its own
// so that a bad format is refused while the flags are parsed, before any
// command has done anything.
type outputFormat string

const (
	outputTable outputFormat = "table" // for people: aligned columns
	outputJSON  outputFormat = "json"  // for scripts: one JSON document
)

func (o *outputFormat) String() string { return string(*o) }

func (o *outputFormat) Set(s string) error {
	switch f := outputFormat(s); f {
	case outputTable, outputJSON:
		*o = f
		return nil
	}
	return fmt.Errorf("use %s or %s", outputTable, outputJSON)
}

func (o *outputFormat) Type() string { return "format" }

// jsonOutput reports whether the command's result is asked for as JSON;
// commands that print the same thing either way need not ask.
func (g *globals) jsonOutput() bool { return g.output == outputJSON }

// print writes a command's result to stdout, the one way every command
// does:
//
//   - -o json: v as one indented JSON document (a struct with json tags,
//     or a slice; a json.RawMessage is re-indented as it is);
//   - -o table (default): what table writes to w, a tabwriter: cells are
//     separated by '\t' and aligned when table returns; a line without a
//     tab ends a block of columns, so headed sections align on their own.
//
// Nothing reaches stdout unless the whole result was made: an error from
// table or from encoding v is returned (main prints it on stderr and exits
// 1) with stdout left empty. Warnings and notes go to cmd.ErrOrStderr() in
// both modes, never into the result.
func (g *globals) print(cmd *cobra.Command, v any, table func(w io.Writer) error) error {
	var buf bytes.Buffer
	if g.jsonOutput() {
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // "->" and "&" stay readable
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("encode the result as JSON: %w", err)
		}
	} else {
		w := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
		if err := table(w); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	if _, err := cmd.OutOrStdout().Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}

// humanDuration is d for a table cell: two units at most, e.g. 42s, 5m07s,
// 3h05m, 12d04h. A negative d (another host's clock ahead of ours) is 0s.
func humanDuration(d time.Duration) string {
	s := int64(max(d, 0) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}
