// Package kubernetes_test checks the manifests in conf/kubernetes: each
// decodes strictly into its Kubernetes API type (an unknown or misspelled
// field fails), and what must hold between them and overlay's code holds:
// host network, the capabilities, the paths overlayd and the plugins use
// by default, the probes on the port overlayd serves, the image the build
// makes, and flags the binaries really have. test/image_test.go runs the
// same DaemonSet's containers from the built image.
package kubernetes_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/state"
)

const (
	cniBinDir = "/opt/cni/bin"
	cniNetDir = "/etc/cni/net.d"
	// metricsPort is the port the manifests give overlayd's --metrics-addr.
	metricsPort = 9472
	// plainHTTP is the plain-http kustomization: beside this directory,
	// since kustomize refuses a base whose directory holds its overlay.
	plainHTTP = "../kubernetes-plain-http"
)

// kustomization is the part of kustomize's Kustomization the manifests
// use; decoding into it strictly catches a misspelled key.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
}

// objects are the decoded documents of the manifests, by file.
type objects struct {
	daemonSets map[string]*appsv1.DaemonSet
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	namespaces map[string]*corev1.Namespace
	quotas     map[string]*corev1.ResourceQuota
}

// decodeFile decodes every document of a YAML file strictly into the type
// its kind names.
func decodeFile(t *testing.T, path string, into *objects) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 DaemonSet":
			ds := &appsv1.DaemonSet{}
			obj, into.daemonSets[path] = ds, ds
		case "v1 ConfigMap":
			cm := &corev1.ConfigMap{}
			obj, into.configMaps[path] = cm, cm
		case "v1 Secret":
			s := &corev1.Secret{}
			obj, into.secrets[path] = s, s
		case "v1 ResourceQuota":
			q := &corev1.ResourceQuota{}
			obj, into.quotas[path] = q, q
		case "v1 Namespace":
			ns := &corev1.Namespace{}
			obj, into.namespaces[path] = ns, ns
		default:
			t.Fatalf("%s document %d: kind %q (apiVersion %q) is none this test knows; add it", path, i, head.Kind, head.APIVersion)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s document %d does not decode strictly into %s: %v", path, i, head.Kind, err)
		}
	}
}

func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	path := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("%s: apiVersion %q kind %q", path, k.APIVersion, k.Kind)
	}
	return k
}

// load decodes every YAML file of the manifests and checks that the
// kustomizations list existing files and that no file is left out.
func load(t *testing.T) *objects {
	t.Helper()
	objs := &objects{daemonSets: map[string]*appsv1.DaemonSet{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, namespaces: map[string]*corev1.Namespace{}, quotas: map[string]*corev1.ResourceQuota{}}
	listed := map[string]bool{"etcd-secret.example.yaml": true}
	for _, dir := range []string{".", "cleanup", plainHTTP} {
		k := readKustomization(t, dir)
		listed[filepath.Join(dir, "kustomization.yaml")] = true
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s/kustomization.yaml lists %s: %v", dir, r, err)
				continue
			}
			if fi.IsDir() && contains(t, p, dir) {
				t.Errorf("%s/kustomization.yaml uses %s, a directory that holds it: kustomize refuses that (cycle detected); move the kustomization out of %s", dir, r, p)
			}
			listed[p] = true
		}
		for _, p := range k.Patches {
			if _, err := os.Stat(filepath.Join(dir, p.Path)); err != nil {
				t.Errorf("%s/kustomization.yaml patches with %s: %v", dir, p.Path, err)
			}
			listed[filepath.Join(dir, p.Path)] = true
		}
	}
	for _, root := range []string{".", plainHTTP} {
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
				return err
			}
			if !listed[path] {
				t.Errorf("%s is in no kustomization: list it, or remove it", path)
			}
			if filepath.Base(path) != "kustomization.yaml" {
				decodeFile(t, path, objs)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return objs
}

// contains reports whether directory dir is sub or holds it.
func contains(t *testing.T, dir, sub string) bool {
	t.Helper()
	a, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := filepath.Abs(sub)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(a, b)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := load(t)
	if len(objs.daemonSets) < 2 || len(objs.configMaps) != 1 || len(objs.namespaces) != 1 || len(objs.secrets) != 1 {
		t.Fatalf("found %d DaemonSets, %d ConfigMaps, %d Namespaces, %d Secrets", len(objs.daemonSets), len(objs.configMaps), len(objs.namespaces), len(objs.secrets))
	}
	// The strictness itself: a misspelled field must fail.
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n"), &ds); err == nil {
		t.Fatal("a misspelled field decoded without error: the decoding is not strict")
	}
}

// container returns the init or main container name of pod spec.
func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// flagValue is the value after --name in argv.
func flagValue(t *testing.T, who string, argv []string, name string) string {
	t.Helper()
	i := slices.Index(argv, name)
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("%s: no %s in %q", who, name, argv)
	}
	return argv[i+1]
}

// volumeAt is the volume mounted at mountPath in c, with the mount.
func volumeAt(t *testing.T, spec corev1.PodSpec, c corev1.Container, mountPath string) (corev1.Volume, corev1.VolumeMount) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != mountPath {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name {
				return v, m
			}
		}
		t.Fatalf("container %s mounts volume %s, which the pod does not define", c.Name, m.Name)
	}
	t.Fatalf("container %s mounts nothing at %s", c.Name, mountPath)
	return corev1.Volume{}, corev1.VolumeMount{}
}

// mountedHost checks that c has host path hostPath mounted at mountPath.
func mountedHost(t *testing.T, spec corev1.PodSpec, c corev1.Container, hostPath, mountPath string) {
	t.Helper()
	v, m := volumeAt(t, spec, c, mountPath)
	if v.HostPath == nil || v.HostPath.Path != hostPath {
		t.Errorf("container %s: %s is volume %s (%+v), want host path %s", c.Name, mountPath, v.Name, v.VolumeSource, hostPath)
	}
	if m.ReadOnly {
		t.Errorf("container %s: %s is mounted read-only; it is written", c.Name, mountPath)
	}
}

func checkSecurity(t *testing.T, c corev1.Container, caps ...corev1.Capability) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("container %s has no securityContext with capabilities", c.Name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("container %s is privileged", c.Name)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container %s drops %v, want ALL", c.Name, sc.Capabilities.Drop)
	}
	if got := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(got, caps) {
		t.Errorf("container %s adds capabilities %v, want exactly %v", c.Name, got, caps)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container %s: root filesystem not read-only", c.Name)
	}
	// Unset means allowed: a root process with added capabilities.
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
	}
}

// checkPod holds for both DaemonSets: every node, the host's network, no
// API access.
func checkPod(t *testing.T, name string, spec corev1.PodSpec) {
	t.Helper()
	if !spec.HostNetwork {
		t.Errorf("%s: not hostNetwork", name)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("%s: no toleration of every taint (operator Exists, no key, no effect): it would skip tainted nodes", name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; overlay needs no API access", name)
	}
	if spec.ServiceAccountName != "" {
		t.Errorf("%s: serviceAccountName %q; overlay needs no API access", name, spec.ServiceAccountName)
	}
}

func TestOverlaydDaemonSet(t *testing.T) {
	objs := load(t)
	ds := objs.daemonSets["daemonset.yaml"]
	if ds == nil {
		t.Fatal("daemonset.yaml holds no DaemonSet")
	}
	spec := ds.Spec.Template.Spec
	checkPod(t, "daemonset.yaml", spec)
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q: the node's network must not be evicted before its pods (system-node-critical)", spec.PriorityClassName)
	}
	if spec.DNSPolicy != corev1.DNSDefault {
		t.Errorf("dnsPolicy %q: etcd names must resolve without cluster DNS (Default)", spec.DNSPolicy)
	}

	install := container(t, spec, "install-cni")
	checkSecurity(t, install)
	argv := install.Command
	if !slices.Equal(argv[:3], []string{"overlayctl", "cni", "install"}) {
		t.Fatalf("install-cni runs %q", argv)
	}
	mountedHost(t, spec, install, cniBinDir, flagValue(t, "install-cni", argv, "--bin-dir"))
	mountedHost(t, spec, install, cniNetDir, flagValue(t, "install-cni", argv, "--net-dir"))
	ledger := flagValue(t, "install-cni", argv, "--ledger")
	mountedHost(t, spec, install, state.DefaultDir, filepath.Dir(ledger))
	conflist := flagValue(t, "install-cni", argv, "--conflist")
	v, _ := volumeAt(t, spec, install, filepath.Dir(conflist))
	if v.ConfigMap == nil {
		t.Fatalf("--conflist %s is not on a ConfigMap volume", conflist)
	}
	cm := objs.configMaps["configmap.yaml"]
	if cm == nil || cm.Name != v.ConfigMap.Name {
		t.Fatalf("the --conflist volume is ConfigMap %s, configmap.yaml has %v", v.ConfigMap.Name, cm)
	}
	checkConflist(t, cm.Data[filepath.Base(conflist)])

	overlayd := container(t, spec, "overlayd")
	checkSecurity(t, overlayd, "NET_ADMIN", "NET_RAW")
	mountedHost(t, spec, overlayd, hostfile.DefaultRunDir, hostfile.DefaultRunDir)
	mountedHost(t, spec, overlayd, state.DefaultDir, state.DefaultDir)
	env := checkEnv(t, overlayd)
	args := overlayd.Args
	// The TLS files are what the Secret volume provides.
	for _, flag := range []string{"--etcd-cafile", "--etcd-certfile", "--etcd-keyfile"} {
		file := expand(flagValue(t, "overlayd", args, flag), env)
		v, m := volumeAt(t, spec, overlayd, filepath.Dir(file))
		if v.Secret == nil || !m.ReadOnly || !slices.ContainsFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Path == filepath.Base(file) }) {
			t.Errorf("%s %s is not a file of a read-only Secret volume", flag, file)
		}
	}
	if flagValue(t, "overlayd", args, "--network") != "default" {
		t.Errorf("overlayd --network is not the conflist's network")
	}
	checkProbes(t, ds, overlayd, env)
	if overlayd.Resources.Requests.Cpu().IsZero() || overlayd.Resources.Requests.Memory().IsZero() {
		t.Errorf("overlayd has no CPU or memory request")
	}
}

// checkConflist: the conflist the nodes get is conf/10-overlay.conflist,
// whose runDir is overlayd's default --run-dir.
func checkConflist(t *testing.T, data string) {
	t.Helper()
	shipped, err := os.ReadFile("../10-overlay.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	if err := json.Unmarshal([]byte(data), &got); err != nil {
		t.Fatalf("the ConfigMap's conflist: %v", err)
	}
	if err := json.Unmarshal(shipped, &want); err != nil {
		t.Fatal(err)
	}
	if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
		t.Errorf("the ConfigMap's conflist differs from conf/10-overlay.conflist:\n%s\n%s", g, w)
	}
	plugin := got["plugins"].([]any)[0].(map[string]any)
	if plugin["runDir"] != hostfile.DefaultRunDir {
		t.Errorf("the conflist's runDir is %v, overlayd's default --run-dir %s", plugin["runDir"], hostfile.DefaultRunDir)
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkEnv checks that every $(VAR) in c's command and args is defined in
// its env, and returns the literal values (others map to "<from NAME>").
func checkEnv(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil {
			env[e.Name] = "<from " + e.Name + ">"
		}
	}
	for _, a := range append(slices.Clone(c.Command), c.Args...) {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			if _, ok := env[m[1]]; !ok {
				t.Errorf("container %s: %s uses $(%s), which its env does not define", c.Name, a, m[1])
			}
		}
	}
	return env
}

func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string { return env[m[2:len(m)-1]] })
}

// checkProbes: both probes and the scrape annotation point at the port
// overlayd is told to serve on.
func checkProbes(t *testing.T, ds *appsv1.DaemonSet, c corev1.Container, env map[string]string) {
	t.Helper()
	addr := expand(flagValue(t, "overlayd", c.Args, "--metrics-addr"), env)
	if !strings.HasSuffix(addr, fmt.Sprintf(":%d", metricsPort)) {
		t.Errorf("--metrics-addr %s is not on port %d", addr, metricsPort)
	}
	for path, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("overlayd has no HTTP probe for %s", path)
			continue
		}
		if p.HTTPGet.Path != path {
			t.Errorf("probe path %s, want %s", p.HTTPGet.Path, path)
		}
		port := p.HTTPGet.Port.IntValue()
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port.String() {
				port = int(cp.ContainerPort)
			}
		}
		if port != metricsPort {
			t.Errorf("the %s probe goes to port %d, overlayd serves on %d", path, port, metricsPort)
		}
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != fmt.Sprint(metricsPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v do not point at :%d/metrics", ann, metricsPort)
	}
}

func TestCleanupDaemonSet(t *testing.T) {
	objs := load(t)
	ds := objs.daemonSets["cleanup/daemonset.yaml"]
	install := container(t, objs.daemonSets["daemonset.yaml"].Spec.Template.Spec, "install-cni")
	spec := ds.Spec.Template.Spec
	checkPod(t, "cleanup/daemonset.yaml", spec)
	un := container(t, spec, "uninstall-cni")
	checkSecurity(t, un)
	if got, want := flagValue(t, "uninstall-cni", un.Command, "--ledger"), flagValue(t, "install-cni", install.Command, "--ledger"); got != want {
		t.Errorf("uninstall-cni reads ledger %s, install-cni writes %s", got, want)
	}
	// The ledger records the paths install-cni saw: the same mounts.
	for _, flag := range []string{"--bin-dir", "--net-dir"} {
		dir := flagValue(t, "install-cni", install.Command, flag)
		v, _ := volumeAt(t, objs.daemonSets["daemonset.yaml"].Spec.Template.Spec, install, dir)
		mountedHost(t, spec, un, v.HostPath.Path, dir)
	}
	mountedHost(t, spec, un, state.DefaultDir, state.DefaultDir)
	td := container(t, spec, "teardown")
	checkSecurity(t, td, "NET_ADMIN", "NET_RAW")
	mountedHost(t, spec, td, hostfile.DefaultRunDir, flagValue(t, "teardown", td.Command, "--run-dir"))
}

// The plain-http patch blanks exactly the TLS variables the DaemonSet has.
func TestPlainHTTPExample(t *testing.T) {
	objs := load(t)
	patch := objs.daemonSets[filepath.Join(plainHTTP, "no-tls.yaml")]
	base := objs.daemonSets["daemonset.yaml"]
	if patch == nil || patch.Name != base.Name || patch.Namespace != base.Namespace {
		t.Fatalf("the plain-http patch does not name the DaemonSet %s/%s", base.Namespace, base.Name)
	}
	c := container(t, patch.Spec.Template.Spec, "overlayd")
	overlayd := container(t, base.Spec.Template.Spec, "overlayd")
	var blanked []string
	for _, e := range c.Env {
		if e.Value != "" || !slices.ContainsFunc(overlayd.Env, func(b corev1.EnvVar) bool { return b.Name == e.Name }) {
			t.Errorf("the patch sets %s=%q; it should blank variables overlayd has", e.Name, e.Value)
		}
		blanked = append(blanked, e.Name)
	}
	for _, flag := range []string{"--etcd-cafile", "--etcd-certfile", "--etcd-keyfile"} {
		v := flagValue(t, "overlayd", overlayd.Args, flag)
		if m := varRef.FindStringSubmatch(v); m == nil || !slices.Contains(blanked, m[1]) {
			t.Errorf("%s %s is not blanked by the plain-http patch", flag, v)
		}
	}
}

// The namespace admits what overlayd needs, which is outside the baseline
// Pod Security profile.
func TestNamespace(t *testing.T) {
	ns := load(t).namespaces["namespace.yaml"]
	if ns == nil {
		t.Fatal("namespace.yaml holds no Namespace")
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace.yaml: pod-security.kubernetes.io/enforce is %q; host network, host paths and NET_ADMIN need privileged", got)
	}
}

// What overlayd takes from the Secret is what the example Secret (and the
// create secret command in its header) provides.
func TestEtcdSecret(t *testing.T) {
	objs := load(t)
	secret := objs.secrets["etcd-secret.example.yaml"]
	if secret == nil {
		t.Fatal("etcd-secret.example.yaml holds no Secret")
	}
	header, err := os.ReadFile("etcd-secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	has := func(key string) bool {
		_, inString := secret.StringData[key]
		_, inData := secret.Data[key]
		return (inString || inData) && (bytes.Contains(header, []byte("--from-literal="+key+"=")) || bytes.Contains(header, []byte("--from-file="+key+"=")))
	}
	spec := objs.daemonSets["daemonset.yaml"].Spec.Template.Spec
	overlayd := container(t, spec, "overlayd")
	refs := 0
	for _, e := range overlayd.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		refs++
		ref := e.ValueFrom.SecretKeyRef
		if ref.Name != secret.Name || !has(ref.Key) {
			t.Errorf("daemonset.yaml: %s comes from Secret %s key %s, which etcd-secret.example.yaml (Secret %s, and its create secret command) does not provide", e.Name, ref.Name, ref.Key, secret.Name)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret == nil {
			continue
		}
		refs++
		if v.Secret.SecretName != secret.Name {
			t.Errorf("daemonset.yaml: volume %s is Secret %s, the example creates %s", v.Name, v.Secret.SecretName, secret.Name)
		}
		for _, it := range v.Secret.Items {
			if !has(it.Key) {
				t.Errorf("daemonset.yaml: volume %s takes key %s, which etcd-secret.example.yaml (and its create secret command) does not provide", v.Name, it.Key)
			}
		}
	}
	if refs < 2 {
		t.Errorf("daemonset.yaml takes %d things from the Secret, want the endpoints and the TLS volume", refs)
	}
}

// Every image of ours is what the build makes, and every flag the
// manifests pass is one the binaries have.
func TestImageAndFlags(t *testing.T) {
	objs := load(t)
	out, err := exec.Command("make", "--no-print-directory", "-s", "-C", "../..", "image-name").Output()
	if err != nil {
		t.Fatalf("make image-name: %v", err)
	}
	image := strings.TrimSpace(string(out))
	bin := t.TempDir()
	for _, pkg := range []string{"overlayd", "overlayctl"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, pkg), "./"+pkg)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	help := map[string]string{}
	helpOf := func(argv ...string) string {
		key := strings.Join(argv, " ")
		if h, ok := help[key]; ok {
			return h
		}
		out, _ := exec.Command(filepath.Join(bin, argv[0]), append(argv[1:], "-h")...).CombinedOutput()
		help[key] = string(out)
		return help[key]
	}
	for file, ds := range objs.daemonSets {
		spec := ds.Spec.Template.Spec
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			if c.Name == "pause" {
				continue
			}
			argv := append(slices.Clone(c.Command), c.Args...)
			if len(argv) == 0 {
				continue // a patch
			}
			if c.Image != image {
				t.Errorf("%s: container %s runs %s, the build makes %s", file, c.Name, c.Image, image)
			}
			// overlayctl SUB [SUB] --flags: its help is that of the subcommand.
			cmd := []string{argv[0]}
			for _, a := range argv[1:] {
				if strings.HasPrefix(a, "-") {
					break
				}
				cmd = append(cmd, a)
			}
			h := helpOf(cmd...)
			for _, a := range argv[len(cmd):] {
				// Go's flag package lists -name, cobra --name.
				listed := regexp.MustCompile(`(?m)^\s+(-\w, )?--?` + regexp.QuoteMeta(strings.TrimLeft(a, "-")) + `\b`)
				if strings.HasPrefix(a, "--") && !listed.MatchString(h) {
					t.Errorf("%s: container %s passes %s, which `%s -h` does not list", file, c.Name, a, strings.Join(cmd, " "))
				}
			}
		}
	}
}
