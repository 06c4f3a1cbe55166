// Command argocd-health evaluates an Argo CD health check in Lua on one
// Kubernetes object with Argo CD's own code, through the call its application
// controller makes: gitops-engine's health.GetResourceHealth with the
// argo-cd module's util/lua overrides.
//
//	argocd-health [-open-libs] HEALTH_LUA [OBJECT]
//
// The script is configured as argocd-cm's
// resource.customizations.health.<group>_<Kind> for the object's group and
// kind, so that the controller's own lookup has to find it; -open-libs is
// argocd-cm's health.lua.useOpenLibs (Argo CD runs its built-in
// resource_customizations with the Lua standard libraries open). OBJECT is a
// YAML or JSON file, stdin when absent. It prints the health status as one
// JSON line, {"status", "message"}; status is "" when Argo CD found no script
// for the object. An object being deleted is "Progressing", "Pending deletion"
// before any script runs, as in Argo CD. A script that fails exits non-zero
// with Argo CD's error on stderr (Argo CD shows the health as Unknown with it).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/gitops-engine/pkg/health"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func readObject(path string) (*unstructured.Unstructured, error) {
	var document []byte
	var err error
	if path == "" {
		document, err = io.ReadAll(os.Stdin)
	} else {
		document, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	asJSON, err := yaml.YAMLToJSON(document)
	if err != nil {
		return nil, err
	}
	// Decoded as the controller's informers decode objects (integers as int64).
	decoded, _, err := unstructured.UnstructuredJSONScheme.Decode(asJSON, nil, nil)
	if err != nil {
		return nil, err
	}
	object, ok := decoded.(*unstructured.Unstructured)
	if !ok {
		return nil, errors.New("not a single object")
	}
	return object, nil
}

func evaluate(scriptPath, objectPath string, openLibs bool) (healthStatus, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return healthStatus{}, err
	}
	object, err := readObject(objectPath)
	if err != nil {
		return healthStatus{}, fmt.Errorf("reading the object: %w", err)
	}
	overrides := lua.ResourceHealthOverrides{
		lua.GetConfigMapKey(object.GroupVersionKind()): v1alpha1.ResourceOverride{
			HealthLua:   string(script),
			UseOpenLibs: openLibs,
		},
	}
	result, err := health.GetResourceHealth(object, overrides)
	if err != nil || result == nil {
		return healthStatus{}, err
	}
	return healthStatus{Status: string(result.Status), Message: result.Message}, nil
}

func main() {
	openLibs := flag.Bool("open-libs", false, "open the Lua standard libraries (argocd-cm health.lua.useOpenLibs)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: argocd-health [-open-libs] HEALTH_LUA [OBJECT]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 || flag.NArg() > 2 {
		flag.Usage()
		os.Exit(2)
	}
	result, err := evaluate(flag.Arg(0), flag.Arg(1), *openLibs)
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(result)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}
