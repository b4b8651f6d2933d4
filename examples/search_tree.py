# examples/search_tree.py
"""A search where every branch works on its own deep copy of the game state.

A robot in a maze must pick up every gem in as few moves as possible.  The
breadth-first search below is ordinary code: each move is tried on
copy.deepcopy(state), which holds the whole grid, the robot and the path so
far.  Given cowstore.freeze(state) instead, the same code copies in O(1)
and each child shares everything but the cells its move changed.  The
script solves the maze both ways, checks that the answers are identical and
valid, and times the two searches.
"""
import argparse
import collections
import copy
import random
import time

import cowstore

WALL, FLOOR, GEM = "#", ".", "*"
MOVES = {"N": (-1, 0), "S": (1, 0), "W": (0, -1), "E": (0, 1)}


def make_maze(rooms, n_gems, seed=0):
    """A (2*rooms+1)-square grid of characters: a random maze with a few loops, and gems."""
    rng = random.Random(seed)
    size = 2 * rooms + 1
    grid = [[WALL] * size for _ in range(size)]
    grid[1][1] = FLOOR
    stack = [(1, 1)]
    while stack:  # carve passages depth-first between the rooms at odd coordinates
        r, c = stack[-1]
        closed = [(dr, dc) for dr, dc in ((0, 2), (2, 0), (0, -2), (-2, 0))
                  if 0 < r + dr < size and 0 < c + dc < size and grid[r + dr][c + dc] == WALL]
        if not closed:
            stack.pop()
            continue
        dr, dc = rng.choice(closed)
        grid[r + dr // 2][c + dc // 2] = grid[r + dr][c + dc] = FLOOR
        stack.append((r + dr, c + dc))
    for _ in range(rooms * rooms // 4):  # loops give the search more than one way round
        r, c = rng.randrange(1, size - 1), rng.randrange(1, size - 1)
        if (r + c) % 2:  # a wall between two rooms
            grid[r][c] = FLOOR
    floor = [(r, c) for r in range(size) for c in range(size) if grid[r][c] == FLOOR]
    for r, c in rng.sample(floor[1:], n_gems):
        grid[r][c] = GEM
    return grid


def move(state, name):
    """The state after one move, or None if a wall is in the way; `state` is unchanged."""
    dr, dc = MOVES[name]
    r, c = state["robot"]
    r, c = r + dr, c + dc
    if state["grid"][r][c] == WALL:
        return None
    child = copy.deepcopy(state)  # O(1) when state is a cowstore container
    if child["grid"][r][c] == GEM:
        child["grid"][r][c] = FLOOR
        child["collected"].append((r, c))
    child["robot"] = (r, c)
    child["moves"].append(name)
    return child


def solve(start):
    """Breadth-first: the first state holding every gem has the fewest moves."""
    n_gems = sum(row.count(GEM) for row in start["grid"])
    seen = {(start["robot"], frozenset())}
    queue = collections.deque([start])
    expanded = 0
    while queue:
        state = queue.popleft()
        expanded += 1
        if len(state["collected"]) == n_gems:
            return "".join(state["moves"]), expanded
        for name in MOVES:
            child = move(state, name)
            if child is not None:
                key = (child["robot"], frozenset(child["collected"]))
                if key not in seen:
                    seen.add(key)
                    queue.append(child)
    return None, expanded


def check_path(grid, path):
    """Replays the path on a plain grid: it must stay off walls and reach every gem."""
    gems = {(r, c) for r, row in enumerate(grid) for c, cell in enumerate(row) if cell == GEM}
    r, c = 1, 1
    for name in path:
        r, c = r + MOVES[name][0], c + MOVES[name][1]
        assert grid[r][c] != WALL, f"the path walks into the wall at {(r, c)}"
        gems.discard((r, c))
    assert not gems, f"the path misses the gems at {sorted(gems)}"


def timed_solve(start):
    t = time.perf_counter()
    path, expanded = solve(start)
    return path, expanded, time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10, help="the maze is rooms x rooms")
    parser.add_argument("--gems", type=int, default=4)
    args = parser.parse_args()

    grid = make_maze(args.rooms, args.gems)
    plain = {"grid": grid, "robot": (1, 1), "collected": [], "moves": []}
    cow = cowstore.freeze(plain)  # the only change the search needs

    plain_path, plain_expanded, t_plain = timed_solve(plain)
    cow_path, cow_expanded, t_cow = timed_solve(cow)
    assert cow_path == plain_path and cow_expanded == plain_expanded, (cow_path, plain_path)
    check_path(grid, cow_path)
    assert cow == plain, "the search changed its starting state"

    print(f"maze {len(grid)}x{len(grid)} with {args.gems} gems: {len(cow_path)} moves,"
          f" {cow_expanded} states expanded")
    print("cowstore and deepcopy searches found the same path, and it collects every gem")
    print(f"search time: deepcopy of plain state {t_plain * 1e3:.1f} ms,"
          f" of cowstore state {t_cow * 1e3:.1f} ms, ratio {t_plain / t_cow:.1f}x")


if __name__ == "__main__":
    main()
