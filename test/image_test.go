package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// TestImage builds the image offline from the root filesystem `make
// image-rootfs` staged (OVERLAY_IMAGE_CONTEXT), with a private podman
// store, and runs the Kubernetes DaemonSet of conf/kubernetes on simulated
// host h1 as a kubelet would: each container of the pod spec with its
// command, args, env (the etcd Secret, the downward API), capabilities,
// read-only root, and its hostPath, ConfigMap and Secret volumes, in h1's
// network namespace (hostNetwork). The etcd serves only TLS, so the
// Secret's certificates are what let overlayd in. h2 runs overlayd from
// bin/. The init container must install the plugins and the conflist into
// h1's CNI dirs, overlayd must lease a subnet, answer its probes and program
// h2, and a container attached with what was installed must reach one on
// h2. Then the cleanup DaemonSet's init containers must leave h1's CNI dirs
// as they were and its kernel without overlay's devices.
func TestImage(t *testing.T) {
	t.Parallel()
	requireTools(t, "podman", "conmon", "runc", "nsenter", "curl")
	ctxDir, image := os.Getenv("OVERLAY_IMAGE_CONTEXT"), os.Getenv("OVERLAY_IMAGE")
	if ctxDir == "" || image == "" {
		t.Fatal("OVERLAY_IMAGE_CONTEXT and OVERLAY_IMAGE are not set: run the e2e tests with `make e2e` (after `make image-rootfs`)")
	}
	if _, err := os.Stat(filepath.Join(ctxDir, "rootfs", "usr", "local", "bin", "overlayd")); err != nil {
		t.Fatalf("no staged image root filesystem in %s (%v): run `make image-rootfs`", ctxDir, err)
	}
	c := newClusterTLS(t, 2)
	c.SetNetwork()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	h2.Start()
	h2.WaitReady()

	// A Kubernetes node forwards already (kubeadm's preflight demands it);
	// overlayd in the container cannot turn it on: /proc/sys is read-only.
	inNS(t, h1.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	node := newKubeNode(t, h1)
	p := newPodman(t, h1, "")
	if out, err := p.cmd("build", "--pull=never", "-q", "-f", filepath.Join(repoRoot(t), "Containerfile"),
		"--build-arg", "VERSION=test", "-t", image, ctxDir); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	ds := loadDaemonSet(t, "conf/kubernetes/daemonset.yaml")
	node.configMaps["overlay-cni"] = node.clusterConflist(t, loadConfigMap(t, "conf/kubernetes/configmap.yaml"))
	// A node that had CNI before: its own portmap (a working copy that is
	// not ours, as Debian's containernetworking-plugins would be) and
	// another network's config that sorts after ours. The install must
	// keep both, and the cleanup leave the dirs exactly like this.
	portmap, err := os.ReadFile(filepath.Join(c.Bin, "portmap"))
	if err != nil {
		t.Fatal(err)
	}
	node.write(t, "opt/cni/bin/portmap", append(portmap, "\n# the host's own copy\n"...), 0o755)
	node.write(t, "etc/cni/net.d/99-other.conflist", []byte(`{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]}`), 0o644)
	before := node.snapshot(t)

	spec := ds.Spec.Template.Spec
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("the DaemonSet has %d init containers and %d containers; this test runs one of each", len(spec.InitContainers), len(spec.Containers))
	}
	out := node.runToCompletion(t, p, spec, spec.InitContainers[0])
	t.Logf("install-cni:\n%s", out)
	for _, f := range []string{"opt/cni/bin/overlay", "opt/cni/bin/overlay-ipam", "opt/cni/bin/bandwidth", "etc/cni/net.d/10-overlay.conflist"} {
		if _, err := os.Stat(filepath.Join(node.root, f)); err != nil {
			t.Fatalf("the init container did not install /%s: %v", f, err)
		}
	}
	if !strings.Contains(out, "kept") || !strings.Contains(out, "/opt/cni/bin/portmap") {
		t.Errorf("the install did not say it kept the host's portmap")
	}

	node.start(t, p, spec, spec.Containers[0])
	hf := h1.WaitReady()
	t.Logf("overlayd in the image leased %s", hf.Subnet)
	node.probe(t, spec.Containers[0])

	// Attach with what the init container installed: the conflist from
	// the node's net dir, the plugins from its bin dir.
	list, err := libcni.ConfListFromFile(filepath.Join(node.root, "etc/cni/net.d/10-overlay.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	h1.CNIBin = filepath.Join(node.root, "opt/cni/bin")
	a, err := h1.AttachWith("a", list)
	if err != nil {
		t.Fatal(err)
	}
	b := h2.Attach("b")
	a.mustReach(t, b.IP)
	b.mustReach(t, a.IP)
	// What `kubectl exec ds/overlayd -- overlayctl status` runs: no flags,
	// the etcd endpoints and TLS files come from the container's env.
	if out, err := p.cmd("exec", "overlayd", "overlayctl", "status"); err != nil || !strings.Contains(out, hf.Subnet.String()) {
		t.Errorf("overlayctl status in the overlayd container: %v\n%s", err, out)
	}
	if err := a.Del(); err != nil {
		t.Fatalf("CNI DEL with the installed plugins: %v", err)
	}

	// Undo: stop overlayd as the kubelet would (SIGTERM), then the cleanup
	// DaemonSet's init containers.
	if out, err := p.cmd("stop", "-t", "20", "overlayd"); err != nil {
		t.Fatalf("podman stop overlayd: %v\n%s", err, out)
	}
	cleanup := loadDaemonSet(t, "conf/kubernetes/cleanup/daemonset.yaml").Spec.Template.Spec
	for _, ic := range cleanup.InitContainers {
		out := node.runToCompletion(t, p, cleanup, ic)
		t.Logf("%s:\n%s", ic.Name, out)
	}
	if links := h1.linkNames(t, "type", "vxlan"); len(links) > 0 {
		t.Errorf("after the cleanup, h1 still has VXLAN devices %v", links)
	}
	sameTree(t, "after the cleanup", node.snapshot(t), before)
}

// kubeNode plays the kubelet of one simulated host: host paths live under
// root (the host's run and state dirs are h's own), ConfigMaps and Secrets
// are directories of files.
type kubeNode struct {
	h          *Host
	root       string
	configMaps map[string]map[string]string
	secrets    map[string]map[string]string
}

func newKubeNode(t *testing.T, h *Host) *kubeNode {
	t.Helper()
	root := filepath.Join(h.c.Dir, fmt.Sprintf("h%d-node", h.N))
	// The host's run and state dirs are the harness's, so WaitReady and
	// Ctl see what overlayd in the container writes.
	h.RunDir, h.StateDir = filepath.Join(root, hostfile.DefaultRunDir), filepath.Join(root, "var/lib/overlay")
	for _, d := range []string{h.RunDir, h.StateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tls := h.c.TLS
	return &kubeNode{h: h, root: root, configMaps: map[string]map[string]string{},
		secrets: map[string]map[string]string{"overlay-etcd": {
			"endpoints": h.c.Endpoints, "ca.crt": read(tls.CAFile), "tls.crt": read(tls.ClientCertFile), "tls.key": read(tls.ClientKeyFile),
		}}}
}

// clusterConflist is the ConfigMap with its conflist pointed at h's run
// and IPAM dirs: the plugins run in this machine's mount namespace, where
// /run/overlay is not h's.
func (n *kubeNode) clusterConflist(t *testing.T, cm *corev1.ConfigMap) map[string]string {
	t.Helper()
	out := map[string]string{}
	for key, val := range cm.Data {
		var list map[string]any
		if err := json.Unmarshal([]byte(val), &list); err != nil {
			t.Fatalf("ConfigMap %s key %s: %v", cm.Name, key, err)
		}
		for _, p := range list["plugins"].([]any) {
			plugin := p.(map[string]any)
			if plugin["type"] != "overlay" {
				continue
			}
			plugin["runDir"] = n.h.RunDir
			plugin["ipam"].(map[string]any)["dataDir"] = n.h.DataDir
		}
		data, _ := json.Marshal(list)
		out[key] = string(data)
	}
	return out
}

// podmanArgs are `podman run` options for container ct of pod spec.
func (n *kubeNode) podmanArgs(t *testing.T, spec corev1.PodSpec, ct corev1.Container) []string {
	t.Helper()
	if !spec.HostNetwork {
		t.Fatal("the pod is not hostNetwork")
	}
	args := []string{"--name", ct.Name, "--pull=never", "--network", "ns:/var/run/netns/" + n.h.NS, "--cgroup-parent", fmt.Sprintf("/%s-h%d", n.h.c.Prefix, n.h.N)}
	if sc := ct.SecurityContext; sc != nil {
		if sc.Privileged != nil && *sc.Privileged {
			t.Fatalf("container %s is privileged", ct.Name)
		}
		if caps := sc.Capabilities; caps != nil {
			for _, d := range caps.Drop {
				args = append(args, "--cap-drop", string(d))
			}
			for _, a := range caps.Add {
				args = append(args, "--cap-add", string(a))
			}
		}
		if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
			args = append(args, "--read-only")
		}
		if sc.RunAsUser != nil {
			args = append(args, "--user", fmt.Sprint(*sc.RunAsUser))
		}
		if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
			args = append(args, "--security-opt", "no-new-privileges")
		}
	}
	env := n.env(t, ct)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		args = append(args, "--env", k+"="+env[k])
	}
	for _, m := range ct.VolumeMounts {
		src := n.volume(t, spec, m.Name)
		opt := src + ":" + m.MountPath
		if m.ReadOnly {
			opt += ":ro"
		}
		args = append(args, "--volume", opt)
	}
	if len(ct.Command) == 0 {
		t.Fatalf("container %s has no command (the image has no entrypoint)", ct.Name)
	}
	args = append(args, "--entrypoint", ct.Command[0], ct.Image)
	for _, a := range append(ct.Command[1:], ct.Args...) {
		args = append(args, expandVars(a, env))
	}
	return args
}

// env resolves ct's environment as the kubelet does, for the sources the
// manifests use: literal values, Secret keys and the downward API.
func (n *kubeNode) env(t *testing.T, ct corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range ct.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandVars(e.Value, env)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := n.secrets[ref.Name][ref.Key]
			if !ok {
				t.Fatalf("env %s: secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "spec.nodeName":
				env[e.Name] = fmt.Sprintf("h%d", n.h.N)
			case "status.hostIP", "status.podIP":
				env[e.Name] = n.h.IP
			default:
				t.Fatalf("env %s: field %s is not simulated", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		default:
			t.Fatalf("env %s: source not simulated", e.Name)
		}
	}
	return env
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandVars replaces $(VAR) with env's value, as the kubelet does in
// command, args and env values; an undefined one stays as written.
func expandVars(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// volume returns the directory or file on this machine that volume name
// of spec is.
func (n *kubeNode) volume(t *testing.T, spec corev1.PodSpec, name string) string {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name != name {
			continue
		}
		switch {
		case v.HostPath != nil:
			dir := filepath.Join(n.root, v.HostPath.Path)
			if err := os.MkdirAll(dir, 0o755); err != nil { // DirectoryOrCreate
				t.Fatal(err)
			}
			return dir
		case v.ConfigMap != nil:
			return n.files(t, "configmap-"+v.ConfigMap.Name, n.configMaps[v.ConfigMap.Name], nil, 0o644)
		case v.Secret != nil:
			var items map[string]string
			if len(v.Secret.Items) > 0 {
				items = map[string]string{}
				for _, it := range v.Secret.Items {
					items[it.Key] = it.Path
				}
			}
			mode := os.FileMode(0o644)
			if v.Secret.DefaultMode != nil {
				mode = os.FileMode(*v.Secret.DefaultMode)
			}
			return n.files(t, "secret-"+v.Secret.SecretName, n.secrets[v.Secret.SecretName], items, mode)
		}
		t.Fatalf("volume %s: kind not simulated", name)
	}
	t.Fatalf("no volume %s in the pod spec", name)
	return ""
}

// files writes data (key -> content; items maps keys to file names when
// set) into a fresh directory.
func (n *kubeNode) files(t *testing.T, name string, data, items map[string]string, mode os.FileMode) string {
	t.Helper()
	if data == nil {
		t.Fatalf("%s: no such object in this simulated cluster", name)
	}
	dir := filepath.Join(n.h.c.Dir, fmt.Sprintf("h%d-%s", n.h.N, name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for key, val := range data {
		file := key
		if items != nil {
			if file = items[key]; file == "" {
				continue
			}
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(val), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runToCompletion runs an init container and returns its output; it must
// exit 0.
func (n *kubeNode) runToCompletion(t *testing.T, p *podman, spec corev1.PodSpec, ct corev1.Container) string {
	t.Helper()
	args := append([]string{"run", "--rm"}, n.podmanArgs(t, spec, ct)...)
	out, err := p.cmd(args...)
	if err != nil {
		t.Fatalf("init container %s: %v\n%s", ct.Name, err, out)
	}
	return out
}

// start runs a long-lived container in the background.
func (n *kubeNode) start(t *testing.T, p *podman, spec corev1.PodSpec, ct corev1.Container) {
	t.Helper()
	args := append([]string{"run", "-d", "--log-driver", "k8s-file"}, n.podmanArgs(t, spec, ct)...)
	if out, err := p.cmd(args...); err != nil {
		t.Fatalf("container %s: %v\n%s", ct.Name, err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.cmd("logs", ct.Name)
			t.Logf("logs of container %s:\n%s", ct.Name, out)
		}
	})
}

// probe does what the kubelet's HTTP probes of ct do (on the host's IP:
// the pod has the host's network) and wants 200 from each.
func (n *kubeNode) probe(t *testing.T, ct corev1.Container) {
	t.Helper()
	for _, pr := range []*corev1.Probe{ct.ReadinessProbe, ct.LivenessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Fatalf("container %s lacks an HTTP readiness or liveness probe", ct.Name)
		}
		port := pr.HTTPGet.Port.IntValue()
		for _, p := range ct.Ports {
			if p.Name == pr.HTTPGet.Port.String() {
				port = int(p.ContainerPort)
			}
		}
		url := fmt.Sprintf("http://%s:%d%s", n.h.IP, port, pr.HTTPGet.Path)
		var last string
		waitFor(t, 30*time.Second, "200 from "+url, func() bool {
			out, err := nsCmd(n.h.NS, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url).Output()
			last = string(out)
			return err == nil && last == "200"
		})
	}
}

// write puts a file on the node, at its host path rel.
func (n *kubeNode) write(t *testing.T, rel string, data []byte, mode os.FileMode) {
	t.Helper()
	path := filepath.Join(n.root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// snapshot records the node's CNI dirs (snapshotTree of each).
func (n *kubeNode) snapshot(t *testing.T) map[string]treeEntry {
	t.Helper()
	snap := map[string]treeEntry{}
	for _, d := range []string{"opt/cni/bin", "etc/cni/net.d"} {
		for p, e := range snapshotTree(t, filepath.Join(n.root, d)) {
			snap[filepath.Join(d, p)] = e
		}
	}
	return snap
}

// loadDaemonSet reads a DaemonSet manifest of the repo.
func loadDaemonSet(t *testing.T, rel string) *appsv1.DaemonSet {
	t.Helper()
	var ds appsv1.DaemonSet
	loadManifest(t, rel, &ds)
	return &ds
}

func loadConfigMap(t *testing.T, rel string) *corev1.ConfigMap {
	t.Helper()
	var cm corev1.ConfigMap
	loadManifest(t, rel, &cm)
	return &cm
}

func loadManifest(t *testing.T, rel string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// repoRoot is the repository this test runs in (test/..).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}
