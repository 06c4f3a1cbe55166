// Command kstatus prints what kstatus, the status library of Flux and kpt
// (sigs.k8s.io/cli-utils/pkg/kstatus/status), makes of Kubernetes objects.
//
// It reads JSON on stdin: one object, a list (`kubectl get -o json` prints a
// `kind: List`), or several of either one after the other. For each object it
// prints one JSON line: {"kind", "namespace", "name", "status", "message"},
// where status is status.Compute's verdict (InProgress, Failed, Current,
// Terminating, Unknown). It exits non-zero on input it cannot read or an
// object kstatus cannot judge, and says why on stderr.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func judge(object *unstructured.Unstructured) (verdict, error) {
	result, err := status.Compute(object)
	if err != nil {
		return verdict{}, fmt.Errorf("%s %s/%s: %w", object.GetKind(), object.GetNamespace(), object.GetName(), err)
	}
	return verdict{
		Kind:      object.GetKind(),
		Namespace: object.GetNamespace(),
		Name:      object.GetName(),
		Status:    result.Status.String(),
		Message:   result.Message,
	}, nil
}

// objects decodes one JSON document into the objects it holds: itself, or
// the items of a list.
func objects(document []byte) ([]*unstructured.Unstructured, error) {
	decoded, _, err := unstructured.UnstructuredJSONScheme.Decode(document, nil, nil)
	if err != nil {
		return nil, err
	}
	switch typed := decoded.(type) {
	case *unstructured.Unstructured:
		return []*unstructured.Unstructured{typed}, nil
	case *unstructured.UnstructuredList:
		items := make([]*unstructured.Unstructured, len(typed.Items))
		for i := range typed.Items {
			items[i] = &typed.Items[i]
		}
		return items, nil
	default:
		return nil, fmt.Errorf("not an object or a list: %T", decoded)
	}
}

func run(in io.Reader, out io.Writer) error {
	decoder := json.NewDecoder(in)
	encoder := json.NewEncoder(out)
	for {
		var document json.RawMessage
		if err := decoder.Decode(&document); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading JSON from stdin: %w", err)
		}
		items, err := objects(document)
		if err != nil {
			return err
		}
		for _, item := range items {
			v, err := judge(item)
			if err != nil {
				return err
			}
			if err := encoder.Encode(v); err != nil {
				return err
			}
		}
	}
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	err := run(os.Stdin, out)
	if flushErr := out.Flush(); err == nil {
		err = flushErr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
