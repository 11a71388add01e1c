// Counts the BPE tokens of one pre-tokenized piece: tiktoken's merge order in O(k log k).
import { lookupRank, type RankTable } from './rank-table.ts'

// A piece longer than this is counted as consecutive chunks of this many bytes. It bounds the work
// (and the scratch memory) per piece: a run of 16,000 'a's or 100,000 spaces is one piece. The count
// of such a piece can differ by a few tokens from tiktoken's, whose merges may cross a chunk edge;
// only pathological pieces are this long (the longest token of either encoding is 128 bytes).
export const MAX_CHUNK_BYTES = 256

// Scratch for one chunk; counting is synchronous, so one set serves every call. Node i is the part
// that starts at byte i; it ends (and its right neighbour starts) at partEnd[i].
const partEnd = new Int32Array(MAX_CHUNK_BYTES + 1)
const partPrev = new Int32Array(MAX_CHUNK_BYTES + 1)
// Rank of the merge of part i with its right neighbour; -1 when there is none or part i is gone.
const pairRank = new Int32Array(MAX_CHUNK_BYTES + 1)
// Min-heap of rank * 256 + start: lowest rank first, leftmost on ties, as tiktoken picks.
// Each merge pushes at most two entries, so k - 1 + 2(k - 1) bound its size.
const heap = new Int32Array(3 * MAX_CHUNK_BYTES)

export function countPieceTokens(table: RankTable, bytes: Uint8Array, start: number, end: number): number {
  let tokens = 0
  for (let from = start; from < end; from += MAX_CHUNK_BYTES) tokens += countChunkTokens(table, bytes, from, Math.min(end, from + MAX_CHUNK_BYTES))
  return tokens
}

function countChunkTokens(table: RankTable, bytes: Uint8Array, start: number, end: number): number {
  const length = end - start
  if (length <= 1) return length
  if (lookupRank(table, bytes, start, end) >= 0) return 1
  return countMergedParts(table, bytes, start, length)
}

// Starts from single bytes and repeatedly merges the adjacent pair of lowest rank. Heap entries are
// not removed when a merge changes a pair: an entry is stale when its part's pair rank no longer
// equals the entry's (a rank names one byte string, so an equal rank at the same start is the same
// pair; dead parts have -1).
function countMergedParts(table: RankTable, bytes: Uint8Array, start: number, length: number): number {
  let size = 0
  for (let i = 0; i < length; i++) {
    partEnd[i] = i + 1
    partPrev[i] = i - 1
    const rank = i + 1 < length ? lookupRank(table, bytes, start + i, start + i + 2) : -1
    pairRank[i] = rank
    if (rank >= 0) size = pushEntry(size, rank * MAX_CHUNK_BYTES + i)
  }
  let parts = length
  while (size > 0) {
    const top = heap[0]!
    size = popEntry(size)
    const at = top % MAX_CHUNK_BYTES
    const rank = (top - at) / MAX_CHUNK_BYTES
    if (pairRank[at] !== rank) continue
    const right = partEnd[at]!
    const after = partEnd[right]!
    partEnd[at] = after
    pairRank[right] = -1
    if (after < length) partPrev[after] = at
    parts--
    const next = after < length ? lookupRank(table, bytes, start + at, start + partEnd[after]!) : -1
    pairRank[at] = next
    if (next >= 0) size = pushEntry(size, next * MAX_CHUNK_BYTES + at)
    const before = partPrev[at]!
    if (before >= 0) {
      const grown = lookupRank(table, bytes, start + before, start + after)
      pairRank[before] = grown
      if (grown >= 0) size = pushEntry(size, grown * MAX_CHUNK_BYTES + before)
    }
  }
  return parts
}

function pushEntry(size: number, key: number): number {
  let i = size
  while (i > 0) {
    const parent = (i - 1) >> 1
    const above = heap[parent]!
    if (above <= key) break
    heap[i] = above
    i = parent
  }
  heap[i] = key
  return size + 1
}

function popEntry(size: number): number {
  const last = heap[size - 1]!
  const n = size - 1
  let i = 0
  for (;;) {
    let child = 2 * i + 1
    if (child >= n) break
    if (child + 1 < n && heap[child + 1]! < heap[child]!) child++
    if (heap[child]! >= last) break
    heap[i] = heap[child]!
    i = child
  }
  heap[i] = last
  return n
}
