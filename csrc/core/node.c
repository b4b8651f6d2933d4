/* The table of node kinds (cowstore/node.h). */
#include "cowstore/node.h"

static const cow_node_ops node_table[COW_NK__COUNT] = {
    [COW_NK_VLEAF] = {"vector leaf", cow_vec_stored_size, cow_vec_poison, cow_vec_write_node},
    [COW_NK_VINNER] = {"vector inner node", cow_vec_stored_size, cow_vec_poison, cow_vec_write_node},
    [COW_NK_VANY] = {"vector node", cow_vec_stored_size, cow_vec_poison, cow_vec_write_node},
    [COW_NK_HNODE] = {"hash index node", cow_map_stored_size, cow_map_poison, cow_map_write_node},
    [COW_NK_VEC] = {"vector header", cow_vec_stored_size, cow_vec_poison, cow_vec_write_node},
    [COW_NK_MAP] = {"map header", cow_map_stored_size, cow_map_poison, cow_map_write_node},
    [COW_NK_BLOB] = {"blob", cow_blob_stored_size, cow_blob_poison, cow_blob_write_node},
    [COW_NK_PACK] = {"packed container", cow_pack_stored_size, cow_pack_poison, cow_pack_write_node},
};

const cow_node_ops *
cow_node_ops_of(int kind)
{
    return &node_table[kind];
}
