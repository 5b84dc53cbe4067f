// Package atomicfile writes files that appear at their final path only when they are complete,
// and commits several such files as one transaction.
//
// A File is a temporary file beside its destination (".<name>.tmp-*"). Commit syncs it, renames
// it over the destination and syncs the directory, so a reader sees the old file or the new
// one, never a mixture, and a crash loses nothing that was there before.
//
// CommitAll makes a group of files (papo's per-token output, its summary table and the run
// state) move together. It first writes a journal naming every temporary file and its
// destination, atomically; the journal's appearance is the commit point. Then it renames the
// files in the order given and removes the journal. Recover, run before the files are next used
// (papo runs it when it opens a run state), finishes the renames of a journal that a crash
// left behind. So after a crash either no file of the group has changed, or every one of them
// will have once Recover has run; never a part of the group.
//
// The package has no dependencies outside the standard library, so that a trainer which
// imports papo's reweighting does not pull in Arrow and Parquet for its state file.
package atomicfile
