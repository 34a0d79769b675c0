// Package cniinstall puts overlay's CNI plugins and conflist into a host's
// CNI directories and takes them out again: the init step of the
// Kubernetes DaemonSet, and the CNI part of `make install`.
//
// It owns only what it wrote. Everything it writes, every directory it
// creates and every file it replaced (with Force) is recorded in a ledger
// with the digest it wrote; Uninstall removes a file only while it still
// has that digest, puts replaced files back, and leaves everything else
// alone. A file it did not write is foreign: a foreign CNI config of the
// same name, or one that sorts before ours (containerd and CRI-O use the
// first config in the directory), makes Install refuse unless Force; a
// foreign reference plugin (the host's own portmap, say) is kept unless
// Force. Every refusal is found before anything is written.
package cniinstall

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// OwnPlugins are the plugins only overlay provides: a foreign file of
// their name is refused like a foreign conflist, never kept in their place.
var ownPlugins = []string{"overlay", "overlay-ipam"}

// DefaultPlugins are the plugins the image ships: overlay's own and the CNI
// reference plugins its conflists chain (loopback for runtimes that set up
// lo through CNI).
func DefaultPlugins() []string {
	return []string{"overlay", "overlay-ipam", "portmap", "bandwidth", "firewall", "tuning", "loopback"}
}

// Options says what to install and where.
type Options struct {
	// From is the directory holding the plugin binaries named in Plugins.
	From    string
	Plugins []string
	// Conflist is installed into NetDir under its own file name.
	Conflist string
	BinDir   string
	NetDir   string
	// Ledger is the file recording what was installed; backups of
	// replaced files go beside it.
	Ledger string
	// Force replaces foreign files of the same name (keeping a backup)
	// and installs even when a foreign config sorts first.
	Force bool
}

// Step is one thing Install or Uninstall did or left, for the report.
type Step struct {
	Path string `json:"path"`
	// Action is wrote, updated, replaced, unchanged, kept, removed,
	// restored or gone.
	Action string `json:"action"`
	Note   string `json:"note,omitempty"`
}

// Report is what a run did, and what the operator should know.
type Report struct {
	Steps    []Step   `json:"steps"`
	Warnings []string `json:"warnings,omitempty"`
}

func (r *Report) step(path, action, note string) {
	r.Steps = append(r.Steps, Step{Path: path, Action: action, Note: note})
}

// file is one file to install.
type file struct {
	dst  string
	data []byte
	mode fs.FileMode
	// own: a foreign file in its place is refused (not kept) without Force.
	own bool
}

// Install installs what o names. A refusal (a foreign conflist, a missing
// plugin, a bad conflist) is returned before anything is written.
func Install(o Options) (Report, error) {
	var rep Report
	if err := o.validate(); err != nil {
		return rep, err
	}
	files, types, err := o.load()
	if err != nil {
		return rep, err
	}
	ledger, err := LoadLedger(o.Ledger)
	if err != nil {
		return rep, err
	}
	var refusals []string
	for _, t := range types {
		if !slices.Contains(o.Plugins, t) && !isFile(filepath.Join(o.BinDir, t)) {
			refusals = append(refusals, fmt.Sprintf("%s uses plugin %q, which is neither among the plugins to install (%s) nor in %s", o.Conflist, t, strings.Join(o.Plugins, ","), o.BinDir))
		}
	}
	netDir, err := o.checkNetDir(ledger)
	if err != nil {
		return rep, err
	}
	rep.Warnings = netDir.warnings
	refusals = append(refusals, netDir.refusals...)
	plan, notes, err := o.plan(files, ledger)
	if err != nil {
		return rep, err
	}
	refusals = append(refusals, notes...)
	refusals = append(refusals, o.checkKeptPlugins(plan, files[len(files)-1].data, types, &rep)...)
	if len(refusals) > 0 {
		return rep, fmt.Errorf("nothing was installed:\n  %s", strings.Join(refusals, "\n  "))
	}
	if err := o.apply(plan, ledger, &rep); err != nil {
		return rep, err
	}
	return rep, removeStale(netDir.stale, ledger, &rep)
}

func (o Options) validate() error {
	for _, f := range []struct{ name, val string }{
		{"--from", o.From}, {"--conflist", o.Conflist}, {"--bin-dir", o.BinDir}, {"--net-dir", o.NetDir}, {"--ledger", o.Ledger},
	} {
		if f.val == "" {
			return fmt.Errorf("%s is empty", f.name)
		}
	}
	if len(o.Plugins) == 0 {
		return fmt.Errorf("--plugins is empty; name the plugins to install, e.g. %s", strings.Join(DefaultPlugins(), ","))
	}
	if ext := filepath.Ext(o.Conflist); ext != ".conflist" {
		return fmt.Errorf("--conflist %s: the file name must end in .conflist, or the runtimes will not read it", o.Conflist)
	}
	return nil
}

// load reads the plugins and the conflist, and the plugin types the
// conflist runs.
func (o Options) load() ([]file, []string, error) {
	var files []file
	for _, name := range o.Plugins {
		if name == "" || strings.ContainsRune(name, '/') {
			return nil, nil, fmt.Errorf("--plugins: %q is not a plugin file name", name)
		}
		src := filepath.Join(o.From, name)
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, nil, fmt.Errorf("plugin %s: %w; --from must hold every plugin in --plugins", name, err)
		}
		files = append(files, file{dst: filepath.Join(o.BinDir, name), data: data, mode: 0o755, own: slices.Contains(ownPlugins, name)})
	}
	data, err := os.ReadFile(o.Conflist)
	if err != nil {
		return nil, nil, fmt.Errorf("read --conflist: %w", err)
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return nil, nil, fmt.Errorf("--conflist %s is not a valid CNI conflist: %w", o.Conflist, err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
		if p.Network.IPAM.Type != "" {
			types = append(types, p.Network.IPAM.Type)
		}
	}
	if !slices.Contains(types, "overlay") {
		return nil, nil, fmt.Errorf("--conflist %s runs no plugin of type \"overlay\"; give an overlay conflist (conf/*.conflist)", o.Conflist)
	}
	files = append(files, file{dst: filepath.Join(o.NetDir, filepath.Base(o.Conflist)), data: data, mode: 0o644, own: true})
	return files, types, nil
}

// netDirCheck is what checkNetDir found.
type netDirCheck struct {
	warnings, refusals []string
	// stale are conflists an earlier install of ours wrote under another
	// name (a different CONFLIST), unchanged: removed, so one overlay
	// conflist is left.
	stale []string
}

// checkNetDir looks at the other CNI configs in the net dir: a foreign one
// that sorts first is refused on a first install (without Force); others
// are warnings. Once our conflist is installed, a foreign one that appears
// later is only a warning: refusing then would keep overlayd from starting
// again on a node that has been running it.
func (o Options) checkNetDir(ledger *Ledger) (netDirCheck, error) {
	var c netDirCheck
	ours := filepath.Base(o.Conflist)
	reinstall := ledger.record(filepath.Join(o.NetDir, ours)) != nil
	entries, err := os.ReadDir(o.NetDir)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read --net-dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == ours || e.IsDir() || !isCNIConfig(name) {
			continue
		}
		path := filepath.Join(o.NetDir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read %s: %w", path, err)
		}
		switch {
		case ledger.ours(path, digestOf(data)):
			c.stale = append(c.stale, path)
		case runsOverlay(data):
			c.warnings = append(c.warnings, fmt.Sprintf("%s also runs the overlay plugin (not installed by this ledger, or changed since); keep one overlay conflist in %s", path, o.NetDir))
		case name < ours && (o.Force || reinstall):
			c.warnings = append(c.warnings, fmt.Sprintf("%s (another network) sorts before %s: runtimes that take the first config (containerd, CRI-O) use it for new pods, not overlay; remove it unless a meta plugin such as Multus reads both", path, ours))
		case name < ours:
			c.refusals = append(c.refusals, fmt.Sprintf("%s (another network) sorts before %s: containerd and CRI-O use the first config in %s, so pods would not get the overlay network. Remove it (pods on it keep running until recreated), or install our conflist under a name that sorts first (e.g. 00-overlay.conflist), or pass --force to install anyway (e.g. for Multus)", path, ours, o.NetDir))
		default:
			c.warnings = append(c.warnings, fmt.Sprintf("%s (another network) sorts after %s: new pods get the overlay network; pods already on it keep theirs until recreated", path, ours))
		}
	}
	return c, nil
}

// isCNIConfig reports whether libcni would read a file of this name.
func isCNIConfig(name string) bool {
	switch filepath.Ext(name) {
	case ".conf", ".conflist", ".json":
		return true
	}
	return false
}

// runsOverlay reports whether a CNI config (single or list) runs the
// overlay plugin.
func runsOverlay(data []byte) bool {
	if list, err := libcni.ConfListFromBytes(data); err == nil {
		for _, p := range list.Plugins {
			if p.Network.Type == "overlay" {
				return true
			}
		}
		return false
	}
	conf, err := libcni.ConfFromBytes(data)
	return err == nil && conf.Network.Type == "overlay"
}

// planned is one file and what to do with it.
type planned struct {
	file
	action string // wrote, updated, replaced, unchanged, kept
	note   string
	// backup: keep the file being replaced, for uninstall to put back.
	backup bool
}

// plan decides each file's fate from what is on disk and in the ledger.
func (o Options) plan(files []file, ledger *Ledger) ([]planned, []string, error) {
	var plan []planned
	var refusals []string
	for _, f := range files {
		cur, err := fileDigest(f.dst)
		if err != nil {
			return nil, nil, err
		}
		want := digestOf(f.data)
		p := planned{file: f}
		switch {
		case cur == "":
			p.action = "wrote"
		case cur == want && ledger.record(f.dst) != nil:
			p.action = "unchanged"
		case cur == want:
			p.action, p.note = "kept", "already identical, not installed by this ledger: uninstall leaves it"
		case ledger.ours(f.dst, cur):
			p.action = "updated"
		case o.Force && earlierOverlay(f):
			p.action, p.note = "replaced", "an earlier overlay install's copy; not backed up, uninstall removes it"
		case o.Force:
			p.action, p.note, p.backup = "replaced", "was not installed by overlay; kept a backup that uninstall restores", true
		case f.own:
			refusals = append(refusals, fmt.Sprintf("%s exists and was not installed by overlay (or was changed since); remove it, or pass --force to replace it (a backup is kept and uninstall puts it back)", f.dst))
			continue
		default:
			p.action, p.note = "kept", "the host's own (not installed by overlay); --force replaces it"
		}
		plan = append(plan, p)
	}
	return plan, refusals, nil
}

// earlierOverlay reports whether the conflist at f's destination is an
// overlay conflist from an earlier install that kept no ledger (copied by
// hand). Putting it back on uninstall would leave a config that runs
// overlay without overlayd, failing every pod's ADD; a plugin binary put
// back does no such harm, so those keep their backups.
func earlierOverlay(f file) bool {
	if filepath.Ext(f.dst) != ".conflist" {
		return false
	}
	data, err := os.ReadFile(f.dst)
	return err == nil && runsOverlay(data)
}

// removeStale removes conflists an earlier install of ours wrote under
// another name.
func removeStale(stale []string, ledger *Ledger, rep *Report) error {
	for _, path := range stale {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		r := ledger.record(path)
		if r != nil && r.Backup != "" {
			// It had replaced a foreign file: put that back.
			if err := restoreBackup(*r); err != nil {
				return err
			}
		}
		ledger.drop(path)
		if err := ledger.save(); err != nil {
			return err
		}
		rep.step(path, "removed", "an earlier overlay conflist of this ledger: one overlay conflist at a time")
	}
	return nil
}

// apply carries out plan, saving the ledger after each change.
func (o Options) apply(plan []planned, ledger *Ledger, rep *Report) error {
	if err := mkdirRecorded(filepath.Dir(o.Ledger), ledger); err != nil {
		return err
	}
	for _, dir := range []string{o.BinDir, o.NetDir} {
		if err := mkdirRecorded(dir, ledger); err != nil {
			return err
		}
	}
	if err := ledger.save(); err != nil {
		return err
	}
	for _, p := range plan {
		if p.action == "unchanged" || p.action == "kept" {
			rep.step(p.dst, p.action, p.note)
			continue
		}
		rec := FileRecord{Path: p.dst, SHA256: digestOf(p.data)}
		if p.backup {
			var err error
			if rec.Backup, rec.BackupMode, err = o.backup(p.dst, ledger); err != nil {
				return err
			}
		}
		if err := writeFile(p.dst, p.data, p.mode); err != nil {
			return err
		}
		ledger.put(rec)
		if err := ledger.save(); err != nil {
			return err
		}
		rep.step(p.dst, p.action, p.note)
	}
	return nil
}

// backup copies the file at path beside the ledger and returns where.
func (o Options) backup(path string, ledger *Ledger) (string, fs.FileMode, error) {
	dir := filepath.Join(filepath.Dir(o.Ledger), "cni-backup")
	if err := mkdirRecorded(dir, ledger); err != nil {
		return "", 0, err
	}
	info, err := os.Stat(path)
	if err != nil {
		return "", 0, fmt.Errorf("back up %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0, fmt.Errorf("back up %s: %w", path, err)
	}
	dst := filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(filepath.Clean(path), "/"), "/", "_"))
	if err := writeFile(dst, data, info.Mode().Perm()); err != nil {
		return "", 0, fmt.Errorf("back up %s: %w", path, err)
	}
	return dst, info.Mode().Perm(), nil
}

// mkdirRecorded creates dir and its missing parents one level at a time,
// recording each it created in the ledger.
func mkdirRecorded(dir string, ledger *Ledger) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if info, err := os.Stat(d); err == nil {
			if !info.IsDir() {
				return fmt.Errorf("%s is not a directory", d)
			}
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for _, d := range slices.Backward(missing) {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		ledger.addDir(d)
	}
	return nil
}

func isFile(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}
