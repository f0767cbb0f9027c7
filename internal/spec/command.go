package spec

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/invopop/jsonschema"
)

// Command is how an app is started, in one of two forms: a shell line
// (command: ./server --port $PORT), run under /bin/sh -c so that variables
// and pipes work, or a list (command: [./server, --port, "8080"]), the
// program and its arguments, run directly. Exactly one of Shell and Args is
// set in a valid spec.
type Command struct {
	// Shell is the string form.
	Shell string
	// Args is the list form.
	Args []string
}

// ShellCommand is the string form of a command.
func ShellCommand(line string) Command {
	return Command{Shell: line}
}

// ArgsCommand is the list form of a command.
func ArgsCommand(args ...string) Command {
	return Command{Args: args}
}

// Argv is the argv to execute: ["/bin/sh", "-c", line] for the string form,
// the list itself for the list form, nil when no command is set.
func (c Command) Argv() []string {
	if c.Shell != "" {
		return []string{"/bin/sh", "-c", c.Shell}
	}
	if len(c.Args) == 0 {
		return nil
	}
	return append([]string(nil), c.Args...)
}

// IsZero reports whether no command is set.
func (c Command) IsZero() bool {
	return c.Shell == "" && len(c.Args) == 0
}

// String shows the command as the user wrote it, for messages.
func (c Command) String() string {
	if c.Shell != "" {
		return c.Shell
	}
	return fmt.Sprintf("%q", c.Args)
}

// MarshalJSON writes the form the user chose: a string or an array.
func (c Command) MarshalJSON() ([]byte, error) {
	if c.Shell != "" || c.Args == nil {
		return json.Marshal(c.Shell)
	}
	return json.Marshal(c.Args)
}

// UnmarshalJSON reads a string or an array of strings.
func (c *Command) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var args []string
		if err := json.Unmarshal(data, &args); err != nil {
			return fmt.Errorf("decode command: %w", err)
		}
		*c = Command{Args: args}
		return nil
	}
	var line string
	if err := json.Unmarshal(data, &line); err != nil {
		return fmt.Errorf("decode command: expected a string or an array of strings: %w", err)
	}
	*c = Command{Shell: line}
	return nil
}

// JSONSchema describes both forms for editors.
func (Command) JSONSchema() *jsonschema.Schema {
	one := uint64(1)
	return &jsonschema.Schema{
		OneOf: []*jsonschema.Schema{
			{Type: "string", MinLength: &one, Description: "A shell line, run under /bin/sh -c."},
			{
				Type:        "array",
				Items:       &jsonschema.Schema{Type: "string"},
				MinItems:    &one,
				Description: "The program and its arguments, run directly.",
			},
		},
	}
}
