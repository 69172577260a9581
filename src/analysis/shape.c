/*
 * shape.c - statement analysis over libpg_query's protobuf parse tree.
 *
 * The tree is walked generically through protobuf-c's descriptors, so a
 * node type we never heard of is still searched for tables, functions
 * and nested writes; only the nodes that mean something to the cache
 * have visitors.  Predicates and rows live in shape_pred.c.
 */
#include "analysis/shape.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>

#include "analysis/shape_build.h"

/* How one statement is being walked. */
struct walk {
	struct shape_build *b;
	struct analysis_stmt *st;
	bool write_role;	/* a bare RangeVar here is written (DDL) */
	bool no_exec;		/* PREPARE, plain EXPLAIN: nothing runs */
	unsigned depth;
};

/*
 * Kind of each top-level node type, stored +1 so that the zero of the
 * unlisted entries means ANALYSIS_UNKNOWN (DO, CALL, CHECKPOINT, LOAD).
 */
#define K(node, kind) [PG_QUERY__NODE__NODE_##node] = (kind) + 1
static const unsigned char kind_table[PG_QUERY__NODE__NODE_A_CONST + 1] = {
	K(SELECT_STMT, ANALYSIS_READ), K(EXPLAIN_STMT, ANALYSIS_READ),
	K(COPY_STMT, ANALYSIS_READ),
	K(INSERT_STMT, ANALYSIS_WRITE), K(UPDATE_STMT, ANALYSIS_WRITE),
	K(DELETE_STMT, ANALYSIS_WRITE), K(MERGE_STMT, ANALYSIS_WRITE),
	K(CREATE_TABLE_AS_STMT, ANALYSIS_WRITE),
	K(TRANSACTION_STMT, ANALYSIS_TX),
	K(VARIABLE_SET_STMT, ANALYSIS_SESSION),
	K(VARIABLE_SHOW_STMT, ANALYSIS_SESSION),
	K(DISCARD_STMT, ANALYSIS_SESSION), K(LISTEN_STMT, ANALYSIS_SESSION),
	K(UNLISTEN_STMT, ANALYSIS_SESSION), K(NOTIFY_STMT, ANALYSIS_SESSION),
	K(PREPARE_STMT, ANALYSIS_SESSION), K(EXECUTE_STMT, ANALYSIS_SESSION),
	K(DEALLOCATE_STMT, ANALYSIS_SESSION),
	K(DECLARE_CURSOR_STMT, ANALYSIS_SESSION),
	K(FETCH_STMT, ANALYSIS_SESSION), K(CLOSE_PORTAL_STMT, ANALYSIS_SESSION),
	K(LOCK_STMT, ANALYSIS_SESSION),
	K(CONSTRAINTS_SET_STMT, ANALYSIS_SESSION),
	K(ALTER_TABLE_STMT, ANALYSIS_DDL), K(ALTER_DOMAIN_STMT, ANALYSIS_DDL),
	K(GRANT_STMT, ANALYSIS_DDL), K(GRANT_ROLE_STMT, ANALYSIS_DDL),
	K(ALTER_DEFAULT_PRIVILEGES_STMT, ANALYSIS_DDL),
	K(CLUSTER_STMT, ANALYSIS_DDL), K(CREATE_STMT, ANALYSIS_DDL),
	K(DEFINE_STMT, ANALYSIS_DDL), K(DROP_STMT, ANALYSIS_DDL),
	K(TRUNCATE_STMT, ANALYSIS_DDL), K(COMMENT_STMT, ANALYSIS_DDL),
	K(INDEX_STMT, ANALYSIS_DDL), K(CREATE_FUNCTION_STMT, ANALYSIS_DDL),
	K(ALTER_FUNCTION_STMT, ANALYSIS_DDL), K(RENAME_STMT, ANALYSIS_DDL),
	K(RULE_STMT, ANALYSIS_DDL), K(VIEW_STMT, ANALYSIS_DDL),
	K(CREATE_DOMAIN_STMT, ANALYSIS_DDL), K(CREATEDB_STMT, ANALYSIS_DDL),
	K(DROPDB_STMT, ANALYSIS_DDL), K(VACUUM_STMT, ANALYSIS_DDL),
	K(CREATE_SEQ_STMT, ANALYSIS_DDL), K(ALTER_SEQ_STMT, ANALYSIS_DDL),
	K(CREATE_TRIG_STMT, ANALYSIS_DDL), K(CREATE_PLANG_STMT, ANALYSIS_DDL),
	K(CREATE_ROLE_STMT, ANALYSIS_DDL), K(ALTER_ROLE_STMT, ANALYSIS_DDL),
	K(DROP_ROLE_STMT, ANALYSIS_DDL), K(REINDEX_STMT, ANALYSIS_DDL),
	K(CREATE_SCHEMA_STMT, ANALYSIS_DDL),
	K(ALTER_DATABASE_STMT, ANALYSIS_DDL),
	K(ALTER_DATABASE_REFRESH_COLL_STMT, ANALYSIS_DDL),
	K(ALTER_DATABASE_SET_STMT, ANALYSIS_DDL),
	K(ALTER_ROLE_SET_STMT, ANALYSIS_DDL),
	K(CREATE_CONVERSION_STMT, ANALYSIS_DDL),
	K(CREATE_CAST_STMT, ANALYSIS_DDL), K(CREATE_OP_CLASS_STMT, ANALYSIS_DDL),
	K(CREATE_OP_FAMILY_STMT, ANALYSIS_DDL),
	K(ALTER_OP_FAMILY_STMT, ANALYSIS_DDL),
	K(CREATE_TABLE_SPACE_STMT, ANALYSIS_DDL),
	K(DROP_TABLE_SPACE_STMT, ANALYSIS_DDL),
	K(ALTER_OBJECT_DEPENDS_STMT, ANALYSIS_DDL),
	K(ALTER_OBJECT_SCHEMA_STMT, ANALYSIS_DDL),
	K(ALTER_OWNER_STMT, ANALYSIS_DDL), K(ALTER_OPERATOR_STMT, ANALYSIS_DDL),
	K(ALTER_TYPE_STMT, ANALYSIS_DDL), K(DROP_OWNED_STMT, ANALYSIS_DDL),
	K(REASSIGN_OWNED_STMT, ANALYSIS_DDL),
	K(COMPOSITE_TYPE_STMT, ANALYSIS_DDL), K(CREATE_ENUM_STMT, ANALYSIS_DDL),
	K(CREATE_RANGE_STMT, ANALYSIS_DDL), K(ALTER_ENUM_STMT, ANALYSIS_DDL),
	K(ALTER_TSDICTIONARY_STMT, ANALYSIS_DDL),
	K(ALTER_TSCONFIGURATION_STMT, ANALYSIS_DDL),
	K(CREATE_FDW_STMT, ANALYSIS_DDL), K(ALTER_FDW_STMT, ANALYSIS_DDL),
	K(CREATE_FOREIGN_SERVER_STMT, ANALYSIS_DDL),
	K(ALTER_FOREIGN_SERVER_STMT, ANALYSIS_DDL),
	K(CREATE_USER_MAPPING_STMT, ANALYSIS_DDL),
	K(ALTER_USER_MAPPING_STMT, ANALYSIS_DDL),
	K(DROP_USER_MAPPING_STMT, ANALYSIS_DDL),
	K(ALTER_TABLE_SPACE_OPTIONS_STMT, ANALYSIS_DDL),
	K(ALTER_TABLE_MOVE_ALL_STMT, ANALYSIS_DDL),
	K(SEC_LABEL_STMT, ANALYSIS_DDL),
	K(CREATE_FOREIGN_TABLE_STMT, ANALYSIS_DDL),
	K(IMPORT_FOREIGN_SCHEMA_STMT, ANALYSIS_DDL),
	K(CREATE_EXTENSION_STMT, ANALYSIS_DDL),
	K(ALTER_EXTENSION_STMT, ANALYSIS_DDL),
	K(ALTER_EXTENSION_CONTENTS_STMT, ANALYSIS_DDL),
	K(CREATE_EVENT_TRIG_STMT, ANALYSIS_DDL),
	K(ALTER_EVENT_TRIG_STMT, ANALYSIS_DDL),
	K(REFRESH_MAT_VIEW_STMT, ANALYSIS_DDL),
	K(REPLICA_IDENTITY_STMT, ANALYSIS_DDL),
	K(ALTER_SYSTEM_STMT, ANALYSIS_DDL), K(CREATE_POLICY_STMT, ANALYSIS_DDL),
	K(ALTER_POLICY_STMT, ANALYSIS_DDL),
	K(CREATE_TRANSFORM_STMT, ANALYSIS_DDL), K(CREATE_AM_STMT, ANALYSIS_DDL),
	K(CREATE_PUBLICATION_STMT, ANALYSIS_DDL),
	K(ALTER_PUBLICATION_STMT, ANALYSIS_DDL),
	K(CREATE_SUBSCRIPTION_STMT, ANALYSIS_DDL),
	K(ALTER_SUBSCRIPTION_STMT, ANALYSIS_DDL),
	K(DROP_SUBSCRIPTION_STMT, ANALYSIS_DDL),
	K(CREATE_STATS_STMT, ANALYSIS_DDL), K(ALTER_STATS_STMT, ANALYSIS_DDL),
	K(ALTER_COLLATION_STMT, ANALYSIS_DDL),
};
#undef K

/*
 * Functions whose result changes from call to call or that have side
 * effects, known without asking pg_proc.  A '*' suffix matches a prefix.
 * Matched whatever the schema: a user function of that name is as
 * likely to be volatile, and a false positive only costs a cache miss.
 */
static const char *const volatile_funcs[] = {
	"random", "random_normal", "setseed", "nextval", "setval", "currval",
	"lastval", "clock_timestamp", "timeofday", "txid_current",
	"txid_current_if_assigned", "pg_current_xact_id",
	"pg_current_xact_id_if_assigned", "set_config", "gen_random_uuid",
	"uuid_generate_*", "pg_advisory_*", "pg_try_advisory_*", "pg_sleep*",
	"pg_notify", "pg_cancel_backend", "pg_terminate_backend",
	"pg_backend_pid", "pg_reload_conf", "pg_switch_wal",
	"pg_logical_emit_message", "pg_stat_reset*", "lo_*", "dblink*",
	"pg_read_file", "pg_read_binary_file", "pg_current_wal_*",
	"txid_current_snapshot", "pg_current_snapshot", "pg_export_snapshot",
	"inet_client_*", "inet_server_*", "pg_relation_size",
	"pg_total_relation_size", "pg_table_size", "pg_indexes_size",
	"pg_database_size", "pg_stat_get_*", "pg_ls_*",
};

/* Functions whose result depends on the clock (STABLE or VOLATILE). */
static const char *const clock_funcs[] = {
	"now", "statement_timestamp", "transaction_timestamp",
	"clock_timestamp", "timeofday", "localtimestamp", "current_timestamp",
	"current_date", "current_time", "localtime",
};

static bool
name_in(const char *name, const char *const *list, size_t n)
{
	size_t i, len;

	for (i = 0; i < n; i++) {
		len = strlen(list[i]);
		if (list[i][len - 1] == '*') {
			if (strncmp(name, list[i], len - 1) == 0)
				return true;
		} else if (strcmp(name, list[i]) == 0) {
			return true;
		}
	}
	return false;
}

void *
shape_vec_push(struct shape_build *b, struct shape_vec *v, size_t elem)
{
	void *slot, *p;
	size_t cap;

	if (v->n == v->cap) {
		if (v->n >= ANALYSIS_MAX_ITEMS) {
			b->overflow = true;
			return NULL;
		}
		cap = v->cap ? v->cap * 2 : 8;
		if (cap > ANALYSIS_MAX_ITEMS)
			cap = ANALYSIS_MAX_ITEMS;
		p = realloc(v->p, cap * elem);
		if (!p) {
			b->oom = true;
			return NULL;
		}
		v->p = p;
		v->cap = cap;
	}
	slot = (char *)v->p + v->n++ * elem;
	memset(slot, 0, elem);
	return slot;
}

void
shape_copy_name(struct shape_build *b, char *dst, const char *src)
{
	size_t len = src ? strlen(src) : 0;

	if (len >= ANALYSIS_NAME_MAX) {
		len = ANALYSIS_NAME_MAX - 1;
		b->overflow = true;
	}
	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

const char *
shape_node_str(const PgQuery__Node *n)
{
	if (!n || n->node_case != PG_QUERY__NODE__NODE_STRING || !n->string)
		return NULL;
	return n->string->sval ? n->string->sval : "";
}

size_t
shape_find_rel(const struct shape_build *b, const struct analysis_stmt *st,
	       const char *schema, const char *name)
{
	const struct analysis_rel *r;
	size_t i;

	for (i = st->rels_first; i < b->rels.n; i++) {
		r = SHAPE_AT(b->rels, struct analysis_rel, i);
		if (strcmp(r->schema, schema ? schema : "") == 0 &&
		    strcmp(r->name, name ? name : "") == 0)
			return i;
	}
	return SIZE_MAX;
}

static void
escalate(struct walk *w, enum analysis_kind kind)
{
	if (!w->no_exec && kind > w->st->kind)
		w->st->kind = kind;
}

static bool
is_system_rel(const char *schema, const char *name)
{
	if (schema[0])
		return strcmp(schema, "pg_catalog") == 0 ||
		       strcmp(schema, "information_schema") == 0 ||
		       strcmp(schema, "pg_toast") == 0;
	return strncmp(name, "pg_", 3) == 0;
}

static bool
is_temp_rel(const PgQuery__RangeVar *rv, const char *schema)
{
	if (rv->relpersistence && strcmp(rv->relpersistence, "t") == 0)
		return true;
	return strcmp(schema, "pg_temp") == 0 ||
	       strncmp(schema, "pg_temp_", 8) == 0;
}

/* A new rel with its reference count (rel_refs stays parallel to rels). */
static struct analysis_rel *
new_rel(struct shape_build *b, const PgQuery__RangeVar *rv)
{
	struct analysis_rel *r;
	size_t *refs;

	r = shape_vec_push(b, &b->rels, sizeof(*r));
	if (!r)
		return NULL;
	refs = shape_vec_push(b, &b->rel_refs, sizeof(*refs));
	if (!refs) {
		b->rels.n--;
		return NULL;
	}
	shape_copy_name(b, r->schema, rv->schemaname);
	shape_copy_name(b, r->name, rv->relname);
	r->is_system = is_system_rel(r->schema, r->name);
	r->is_temp = is_temp_rel(rv, r->schema);
	return r;
}

/*
 * Record a relation reference; a plain EXPLAIN or PREPARE writes nothing.
 * Each mention is counted: a predicate holds for a rel mentioned once.
 */
static void
add_rel(struct walk *w, const PgQuery__RangeVar *rv, bool written)
{
	struct analysis_rel *r;
	size_t i;

	if (!rv || !rv->relname)
		return;
	i = shape_find_rel(w->b, w->st, rv->schemaname, rv->relname);
	if (i != SIZE_MAX) {
		r = SHAPE_AT(w->b->rels, struct analysis_rel, i);
	} else {
		r = new_rel(w->b, rv);
		if (!r)
			return;
		i = w->b->rels.n - 1;
	}
	SHAPE_AT(w->b->rel_refs, size_t, i)[0]++;
	if (written && !w->no_exec)
		r->written = true;
	else
		r->read = true;
	w->st->uses_system_catalog |= r->is_system;
	w->st->has_temp_ref |= r->is_temp;
}

/*
 * Record a function named by its last one or two name parts; 'vol' marks
 * it volatile whatever its name.
 */
static void
add_func_name(struct walk *w, PgQuery__Node *const *names, size_t n,
	      bool vol)
{
	const char *schema = "", *name;
	struct analysis_func *f;
	size_t i;

	if (n == 0)
		return;
	name = shape_node_str(names[n - 1]);
	if (n >= 2)
		schema = shape_node_str(names[n - 2]);
	if (!name || !schema)
		return;
	vol |= name_in(name, volatile_funcs,
		       sizeof(volatile_funcs) / sizeof(*volatile_funcs));
	w->st->has_volatile_func |= vol;
	for (i = w->st->funcs_first; i < w->b->funcs.n; i++) {
		f = SHAPE_AT(w->b->funcs, struct analysis_func, i);
		if (strcmp(f->schema, schema) == 0 &&
		    strcmp(f->name, name) == 0) {
			f->known_volatile |= vol;
			return;
		}
	}
	f = shape_vec_push(w->b, &w->b->funcs, sizeof(*f));
	if (!f)
		return;
	shape_copy_name(w->b, f->schema, schema);
	shape_copy_name(w->b, f->name, name);
	f->known_volatile = vol;
}

static void
add_func(struct walk *w, const PgQuery__FuncCall *fc)
{
	const char *name;

	if (fc->n_funcname == 0)
		return;
	name = shape_node_str(fc->funcname[fc->n_funcname - 1]);
	if (name && (name_in(name, clock_funcs,
			     sizeof(clock_funcs) / sizeof(*clock_funcs)) ||
		     (strcmp(name, "age") == 0 && fc->n_args == 1)))
		w->st->uses_clock = true;	/* age(x) is age(current_date, x) */
	add_func_name(w, fc->funcname, fc->n_funcname, false);
}

/* TABLESAMPLE method(...) without REPEATABLE picks other rows each time. */
static void
add_sample(struct walk *w, const PgQuery__RangeTableSample *ts)
{
	add_func_name(w, ts->method, ts->n_method, ts->repeatable == NULL);
}

/* 'now'::timestamp, 'today'::date ... are read from the clock. */
static void
check_clock_literal(struct walk *w, const PgQuery__TypeCast *tc)
{
	static const char *const words[] = {"now", "today", "tomorrow",
					    "yesterday"};
	const PgQuery__AConst *c;
	const char *s;
	size_t i;

	if (!tc->arg || tc->arg->node_case != PG_QUERY__NODE__NODE_A_CONST)
		return;
	c = tc->arg->a_const;
	if (!c || c->val_case != PG_QUERY__A__CONST__VAL_SVAL || !c->sval)
		return;
	s = c->sval->sval ? c->sval->sval : "";
	while (*s == ' ')
		s++;
	for (i = 0; i < sizeof(words) / sizeof(*words); i++)
		if (strncasecmp(s, words[i], strlen(words[i])) == 0)
			w->st->uses_clock = true;
}

static void
add_cte(struct walk *w, const char *name)
{
	struct analysis_col *c;

	c = shape_vec_push(w->b, &w->b->ctes, sizeof(*c));
	if (c)
		shape_copy_name(w->b, c->name, name);
}

static void walk_msg(struct walk *w, const ProtobufCMessage *m);

/* Walk every message-typed field of 'm' except the one equal to 'skip'. */
static void
walk_fields(struct walk *w, const ProtobufCMessage *m, const void *skip)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const ProtobufCFieldDescriptor *f;
	const char *base = (const char *)m;
	ProtobufCMessage *const *arr;
	const ProtobufCMessage *sub;
	size_t i, j, n;

	for (i = 0; i < d->n_fields; i++) {
		f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			memcpy(&n, base + f->quantifier_offset, sizeof(n));
			memcpy(&arr, base + f->offset, sizeof(arr));
			for (j = 0; j < n; j++)
				if (arr[j] != skip)
					walk_msg(w, arr[j]);
			continue;
		}
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(const void *)(base + f->quantifier_offset) !=
			    f->id)
			continue;
		memcpy(&sub, base + f->offset, sizeof(sub));
		if (sub && sub != skip)
			walk_msg(w, sub);
	}
}

/* A Node is a oneof of ~250 pointers: jump to the set one directly. */
static void
walk_node(struct walk *w, const PgQuery__Node *n)
{
	const ProtobufCFieldDescriptor *f;
	const ProtobufCMessage *sub;

	if (n->node_case == PG_QUERY__NODE__NODE__NOT_SET)
		return;
	f = protobuf_c_message_descriptor_get_field(&pg_query__node__descriptor,
						    n->node_case);
	if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
		return;
	memcpy(&sub, (const char *)n + f->offset, sizeof(sub));
	if (sub)
		walk_msg(w, sub);
}

/* The target of INSERT/UPDATE/DELETE/MERGE; the rest of it is read. */
static void
walk_write(struct walk *w, const ProtobufCMessage *m,
	   const PgQuery__RangeVar *target)
{
	bool role = w->write_role;

	escalate(w, ANALYSIS_WRITE);
	add_rel(w, target, true);
	w->write_role = false;
	walk_fields(w, m, target);
	w->write_role = role;
}

static void
walk_select(struct walk *w, const PgQuery__SelectStmt *s)
{
	bool role = w->write_role;

	if (s->into_clause) {	/* SELECT INTO creates and fills a table */
		escalate(w, ANALYSIS_WRITE);
		w->st->creates_relation |= !w->no_exec;
		add_rel(w, s->into_clause->rel, true);
	}
	w->write_role = false;
	walk_fields(w, &s->base, s->into_clause);
	w->write_role = role;
}

static void
walk_copy(struct walk *w, const PgQuery__CopyStmt *c)
{
	bool role = w->write_role;

	if (c->is_from)
		escalate(w, ANALYSIS_WRITE);
	/* A program runs a shell command; a file is written on the server. */
	if (c->is_program || (!c->is_from && c->filename && c->filename[0]))
		escalate(w, ANALYSIS_UNKNOWN);
	add_rel(w, c->relation, c->is_from);
	w->write_role = false;
	walk_fields(w, &c->base, c->relation);
	w->write_role = role;
}

static void
walk_ctas(struct walk *w, const PgQuery__CreateTableAsStmt *c)
{
	bool role = w->write_role;

	escalate(w, ANALYSIS_WRITE);
	w->st->creates_relation |= !w->no_exec;
	if (c->into)
		add_rel(w, c->into->rel, true);
	w->write_role = false;
	if (c->query)
		walk_msg(w, &c->query->base);
	w->write_role = role;
}

/* DROP TABLE/VIEW/... names relations as lists of strings, not RangeVars. */
static void
walk_drop(struct walk *w, const PgQuery__DropStmt *d)
{
	PgQuery__RangeVar rv = PG_QUERY__RANGE_VAR__INIT;
	const PgQuery__List *l;
	const char *schema, *name;
	size_t i;

	switch (d->remove_type) {
	case PG_QUERY__OBJECT_TYPE__OBJECT_TABLE:
	case PG_QUERY__OBJECT_TYPE__OBJECT_VIEW:
	case PG_QUERY__OBJECT_TYPE__OBJECT_MATVIEW:
	case PG_QUERY__OBJECT_TYPE__OBJECT_FOREIGN_TABLE:
	case PG_QUERY__OBJECT_TYPE__OBJECT_SEQUENCE:
		break;
	default:
		return;
	}
	for (i = 0; i < d->n_objects; i++) {
		if (d->objects[i]->node_case != PG_QUERY__NODE__NODE_LIST ||
		    !(l = d->objects[i]->list) || l->n_items == 0)
			continue;
		name = shape_node_str(l->items[l->n_items - 1]);
		schema = "";
		if (l->n_items >= 2)
			schema = shape_node_str(l->items[l->n_items - 2]);
		if (!name || !schema)
			continue;
		rv.schemaname = (char *)schema;
		rv.relname = (char *)name;
		add_rel(w, &rv, true);
	}
}

static void
walk_prepare(struct walk *w, const PgQuery__PrepareStmt *p)
{
	bool no_exec = w->no_exec;

	w->no_exec = true;
	walk_fields(w, &p->base, NULL);
	w->no_exec = no_exec;
}

static bool
visit_special(struct walk *w, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	if (d == &pg_query__insert_stmt__descriptor)
		walk_write(w, m, ((const PgQuery__InsertStmt *)m)->relation);
	else if (d == &pg_query__update_stmt__descriptor)
		walk_write(w, m, ((const PgQuery__UpdateStmt *)m)->relation);
	else if (d == &pg_query__delete_stmt__descriptor)
		walk_write(w, m, ((const PgQuery__DeleteStmt *)m)->relation);
	else if (d == &pg_query__merge_stmt__descriptor)
		walk_write(w, m, ((const PgQuery__MergeStmt *)m)->relation);
	else if (d == &pg_query__select_stmt__descriptor)
		walk_select(w, (const PgQuery__SelectStmt *)m);
	else if (d == &pg_query__copy_stmt__descriptor)
		walk_copy(w, (const PgQuery__CopyStmt *)m);
	else if (d == &pg_query__create_table_as_stmt__descriptor)
		walk_ctas(w, (const PgQuery__CreateTableAsStmt *)m);
	else if (d == &pg_query__prepare_stmt__descriptor)
		walk_prepare(w, (const PgQuery__PrepareStmt *)m);
	else if (d == &pg_query__drop_stmt__descriptor)
		walk_drop(w, (const PgQuery__DropStmt *)m);
	else
		return false;
	return true;
}

/* Leaves and nodes that only add a fact; their children are walked too. */
static void
visit_plain(struct walk *w, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const PgQuery__SQLValueFunction *svf;

	if (d == &pg_query__range_var__descriptor) {
		add_rel(w, (const PgQuery__RangeVar *)m, w->write_role);
	} else if (d == &pg_query__func_call__descriptor) {
		add_func(w, (const PgQuery__FuncCall *)m);
	} else if (d == &pg_query__param_ref__descriptor) {
		int n = ((const PgQuery__ParamRef *)m)->number;

		if (n > w->st->max_param)
			w->st->max_param = n;
	} else if (d == &pg_query__locking_clause__descriptor) {
		w->st->has_row_lock = true;
	} else if (d == &pg_query__sqlvalue_function__descriptor) {
		svf = (const PgQuery__SQLValueFunction *)m;
		if (svf->op >= PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_CURRENT_DATE &&
		    svf->op <= PG_QUERY__SQLVALUE_FUNCTION_OP__SVFOP_LOCALTIMESTAMP_N)
			w->st->uses_clock = true;
	} else if (d == &pg_query__type_cast__descriptor) {
		check_clock_literal(w, (const PgQuery__TypeCast *)m);
	} else if (d == &pg_query__range_table_sample__descriptor) {
		add_sample(w, (const PgQuery__RangeTableSample *)m);
	} else if (d == &pg_query__common_table_expr__descriptor) {
		add_cte(w, ((const PgQuery__CommonTableExpr *)m)->ctename);
	}
	walk_fields(w, m, NULL);
}

static void
walk_msg(struct walk *w, const ProtobufCMessage *m)
{
	if (w->b->oom)
		return;
	if (w->depth >= ANALYSIS_MAX_DEPTH) {
		w->b->overflow = true;
		return;
	}
	w->depth++;
	if (m->descriptor == &pg_query__node__descriptor)
		walk_node(w, (const PgQuery__Node *)m);
	else if (!visit_special(w, m))
		visit_plain(w, m);
	w->depth--;
}

/* GUC enum values compare case-insensitively: 'REPEATABLE READ' works. */
static enum analysis_isolation
isolation_of(const char *s)
{
	if (strcasecmp(s, "read uncommitted") == 0)
		return ANALYSIS_ISO_READ_UNCOMMITTED;
	if (strcasecmp(s, "read committed") == 0)
		return ANALYSIS_ISO_READ_COMMITTED;
	if (strcasecmp(s, "repeatable read") == 0)
		return ANALYSIS_ISO_REPEATABLE_READ;
	if (strcasecmp(s, "serializable") == 0)
		return ANALYSIS_ISO_SERIALIZABLE;
	return ANALYSIS_ISO_UNSPECIFIED;
}

/* The text or integer of an A_Const, as BEGIN/SET options carry them. */
static const char *
const_str(const PgQuery__Node *n, int *ival)
{
	const PgQuery__AConst *c;

	if (!n || n->node_case != PG_QUERY__NODE__NODE_A_CONST || !n->a_const)
		return NULL;
	c = n->a_const;
	if (c->val_case == PG_QUERY__A__CONST__VAL_IVAL && c->ival && ival)
		*ival = c->ival->ival;
	if (c->val_case == PG_QUERY__A__CONST__VAL_SVAL && c->sval)
		return c->sval->sval ? c->sval->sval : "";
	return NULL;
}

/* transaction_isolation / transaction_read_only items of a DefElem list. */
static void
tx_options(struct analysis_stmt *st, PgQuery__Node *const *opts, size_t n)
{
	const PgQuery__DefElem *de;
	const char *s;
	int ival;
	size_t i;

	for (i = 0; i < n; i++) {
		if (opts[i]->node_case != PG_QUERY__NODE__NODE_DEF_ELEM)
			continue;
		de = opts[i]->def_elem;
		if (!de || !de->defname)
			continue;
		ival = -1;
		s = const_str(de->arg, &ival);
		if (strcmp(de->defname, "transaction_isolation") == 0 && s)
			st->isolation = isolation_of(s);
		else if (strcmp(de->defname, "transaction_read_only") == 0 &&
			 ival >= 0)
			st->tx_read_only = ival != 0;
	}
}

static void
detail_tx(struct shape_build *b, struct analysis_stmt *st,
	  const PgQuery__TransactionStmt *t)
{
	static const enum analysis_tx map[] = {
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN] = ANALYSIS_TX_BEGIN,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START] = ANALYSIS_TX_BEGIN,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT] = ANALYSIS_TX_COMMIT,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK] = ANALYSIS_TX_ROLLBACK,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT] = ANALYSIS_TX_SAVEPOINT,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE] = ANALYSIS_TX_RELEASE,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO] = ANALYSIS_TX_ROLLBACK_TO,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_PREPARE] = ANALYSIS_TX_PREPARE,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT_PREPARED] = ANALYSIS_TX_COMMIT_PREPARED,
		[PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_PREPARED] = ANALYSIS_TX_ROLLBACK_PREPARED,
	};

	if ((unsigned)t->kind < sizeof(map) / sizeof(*map))
		st->tx = map[t->kind];
	if (st->tx == ANALYSIS_TX_NONE)
		st->kind = ANALYSIS_UNKNOWN;
	st->tx_chain = t->chain;
	tx_options(st, t->options, t->n_options);
	if (t->savepoint_name && t->savepoint_name[0])
		shape_copy_name(b, st->name, t->savepoint_name);
	else if (t->gid)
		shape_copy_name(b, st->name, t->gid);
}

/*
 * SET TRANSACTION and SET transaction_isolation act on the current
 * transaction (TX); SET SESSION CHARACTERISTICS and
 * default_transaction_isolation set the default for the next ones.
 */
static void
detail_set(struct shape_build *b, struct analysis_stmt *st,
	   const PgQuery__VariableSetStmt *v)
{
	const char *name = v->name ? v->name : "";
	const char *s;

	shape_copy_name(b, st->name, name);
	if (v->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI) {
		if (strncmp(name, "TRANSACTION", 11) == 0) {
			st->kind = ANALYSIS_TX;
			st->tx = ANALYSIS_TX_SET;
		}
		tx_options(st, v->args, v->n_args);
		return;
	}
	if (strcmp(name, "transaction_isolation") == 0) {
		st->kind = ANALYSIS_TX;
		st->tx = ANALYSIS_TX_SET;
	}
	if (v->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE &&
	    v->n_args == 1 && (s = const_str(v->args[0], NULL)) &&
	    (strcmp(name, "transaction_isolation") == 0 ||
	     strcmp(name, "default_transaction_isolation") == 0))
		st->isolation = isolation_of(s);
}

/* EXPLAIN executes its statement only with ANALYZE [true|on|1...]. */
static bool
explain_analyzes(const PgQuery__ExplainStmt *e)
{
	const PgQuery__DefElem *de;
	const char *s;
	size_t i;

	for (i = 0; i < e->n_options; i++) {
		if (e->options[i]->node_case != PG_QUERY__NODE__NODE_DEF_ELEM)
			continue;
		de = e->options[i]->def_elem;
		if (!de || !de->defname || strcmp(de->defname, "analyze") != 0)
			continue;
		if (!de->arg)
			return true;
		s = shape_node_str(de->arg);
		if (!s)		/* a number or something odd: assume it runs */
			return !(de->arg->node_case == PG_QUERY__NODE__NODE_INTEGER &&
				 de->arg->integer && de->arg->integer->ival == 0);
		return !(strcasecmp(s, "off") == 0 || strcasecmp(s, "false") == 0 ||
			 strcasecmp(s, "no") == 0 || strcmp(s, "0") == 0);
	}
	return false;
}

static enum analysis_kind
kind_of(const PgQuery__Node *n)
{
	if ((unsigned)n->node_case < sizeof(kind_table) &&
	    kind_table[n->node_case] != 0)
		return (enum analysis_kind)(kind_table[n->node_case] - 1);
	return ANALYSIS_UNKNOWN;
}

/* The names SESSION statements carry (see analysis_stmt.name). */
static void
detail_name(struct shape_build *b, struct analysis_stmt *st,
	    const PgQuery__Node *n)
{
	const char *s = NULL;

	switch (n->node_case) {
	case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT:
		s = n->variable_show_stmt->name;
		break;
	case PG_QUERY__NODE__NODE_PREPARE_STMT:
		s = n->prepare_stmt->name;
		break;
	case PG_QUERY__NODE__NODE_EXECUTE_STMT:
		s = n->execute_stmt->name;
		break;
	case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
		s = n->deallocate_stmt->name;
		break;
	case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
		s = n->declare_cursor_stmt->portalname;
		break;
	case PG_QUERY__NODE__NODE_FETCH_STMT:
		s = n->fetch_stmt->portalname;
		break;
	case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
		s = n->close_portal_stmt->portalname;
		break;
	case PG_QUERY__NODE__NODE_LISTEN_STMT:
		s = n->listen_stmt->conditionname;
		break;
	case PG_QUERY__NODE__NODE_UNLISTEN_STMT:
		s = n->unlisten_stmt->conditionname;
		break;
	case PG_QUERY__NODE__NODE_NOTIFY_STMT:
		s = n->notify_stmt->conditionname;
		break;
	default:
		break;
	}
	if (s)
		shape_copy_name(b, st->name, s);
}

/*
 * Kind and statement-level details, then the walk.  Returns the node
 * whose WHERE and rows describe what the statement touches: the inner
 * statement of EXPLAIN ANALYZE, none for a plain EXPLAIN.
 */
static const PgQuery__Node *
analyse_top(struct walk *w, const PgQuery__Node *n)
{
	struct analysis_stmt *st = w->st;
	const PgQuery__ExplainStmt *ex;

	st->kind = kind_of(n);
	w->write_role = st->kind == ANALYSIS_DDL;
	if (n->node_case == PG_QUERY__NODE__NODE_TRANSACTION_STMT && n->transaction_stmt)
		detail_tx(w->b, st, n->transaction_stmt);
	else if (n->node_case == PG_QUERY__NODE__NODE_VARIABLE_SET_STMT &&
		 n->variable_set_stmt)
		detail_set(w->b, st, n->variable_set_stmt);
	else if (n->node_case != PG_QUERY__NODE__NODE_EXPLAIN_STMT)
		detail_name(w->b, st, n);
	if (n->node_case != PG_QUERY__NODE__NODE_EXPLAIN_STMT ||
	    !n->explain_stmt || !n->explain_stmt->query) {
		walk_msg(w, &n->base);
		return n;
	}
	ex = n->explain_stmt;
	st->is_explain = true;
	w->no_exec = !explain_analyzes(ex);
	if (!w->no_exec)
		st->kind = kind_of(ex->query);
	/* It runs a prepared statement this analysis cannot name. */
	if (!w->no_exec &&
	    ex->query->node_case == PG_QUERY__NODE__NODE_EXECUTE_STMT)
		st->kind = ANALYSIS_UNKNOWN;
	walk_msg(w, &ex->query->base);
	return w->no_exec ? NULL : ex->query;
}

/* Unqualified references that may name a WITH query of the statement. */
static void
mark_ctes(struct shape_build *b, struct analysis_stmt *st)
{
	struct analysis_rel *r;
	const struct analysis_col *c;
	size_t i, j;

	for (i = st->rels_first; i < b->rels.n; i++) {
		r = SHAPE_AT(b->rels, struct analysis_rel, i);
		for (j = 0; j < b->ctes.n && !r->schema[0]; j++) {
			c = SHAPE_AT(b->ctes, struct analysis_col, j);
			if (strcmp(c->name, r->name) == 0)
				r->maybe_cte = true;
		}
	}
}

static void
analyse_stmt(struct shape_build *b, const PgQuery__RawStmt *raw,
	     size_t sqllen)
{
	struct analysis_stmt st, *slot;
	struct walk w = {.b = b, .st = &st};
	const PgQuery__Node *top;

	memset(&st, 0, sizeof(st));
	st.tx_read_only = -1;
	st.offset = raw->stmt_location > 0 ? (size_t)raw->stmt_location : 0;
	if (st.offset > sqllen)
		st.offset = sqllen;
	st.length = raw->stmt_len > 0 ? (size_t)raw->stmt_len : sqllen - st.offset;
	if (st.length > sqllen - st.offset)
		st.length = sqllen - st.offset;
	st.rels_first = b->rels.n;
	st.funcs_first = b->funcs.n;
	st.preds_first = b->preds.n;
	st.cols_first = b->cols.n;
	st.rows_first = b->values.n;
	b->ctes.n = 0;
	b->overflow = false;
	if (raw->stmt) {
		top = analyse_top(&w, raw->stmt);
		mark_ctes(b, &st);
		if (top && !b->oom)
			shape_preds(b, &st, top);
	}
	st.n_rels = b->rels.n - st.rels_first;
	st.n_funcs = b->funcs.n - st.funcs_first;
	st.n_preds = b->preds.n - st.preds_first;
	st.n_cols = b->cols.n - st.cols_first;
	st.overflow = b->overflow;
	slot = shape_vec_push(b, &b->stmts, sizeof(*slot));
	if (slot)
		*slot = st;
}

static void
build_free(struct shape_build *b)
{
	free(b->stmts.p);
	free(b->rels.p);
	free(b->rel_refs.p);
	free(b->funcs.p);
	free(b->preds.p);
	free(b->values.p);
	free(b->value_offs.p);
	free(b->cols.p);
	free(b->ctes.p);
	free(b->pool);
}

/* Hand the pools over to 'a' and fold the statements into its summary. */
static void
finish(struct shape_build *b, struct analysis *a)
{
	const struct analysis_stmt *st;
	const size_t *offs = b->value_offs.p;
	size_t i;

	a->stmts = b->stmts.p, a->n_stmts = b->stmts.n;
	a->rels = b->rels.p, a->n_rels = b->rels.n;
	a->funcs = b->funcs.p, a->n_funcs = b->funcs.n;
	a->preds = b->preds.p, a->n_preds = b->preds.n;
	a->values = b->values.p, a->n_values = b->values.n;
	a->cols = b->cols.p, a->n_cols = b->cols.n;
	a->text_pool = b->pool;
	for (i = 0; i < a->n_values; i++)
		a->values[i].text = offs[i] == SIZE_MAX ? "" : b->pool + offs[i];
	free(b->value_offs.p);
	free(b->rel_refs.p);
	free(b->ctes.p);
	for (i = 0; i < a->n_stmts; i++) {
		st = &a->stmts[i];
		if (st->kind > a->kind)
			a->kind = st->kind;
		a->has_row_lock |= st->has_row_lock;
		a->has_temp_ref |= st->has_temp_ref;
		a->uses_system_catalog |= st->uses_system_catalog;
		a->has_volatile_func |= st->has_volatile_func;
		a->uses_clock |= st->uses_clock;
		a->creates_relation |= st->creates_relation;
		a->overflow |= st->overflow;
		if (st->max_param > a->max_param)
			a->max_param = st->max_param;
	}
	a->overflow |= b->overflow;	/* a statement that did not fit */
}

/*
 * Two shapes of text make libpg_query itself fail, so they are caught
 * from the tokens before parsing (pg_query_scan() is a flat lexer):
 *
 * - Copies.  It writes the source of a multi-column assignment,
 *   SET (a, b) = <source>, once per column when it serialises a tree: a
 *   wide one costs columns x source and nested ones (WITH ... UPDATE in a
 *   subquery of the source) multiply; 1.5 KB of text took 36 s and 130 MB
 *   in pg_query_parse_protobuf(), and pg_query_normalize() as long.  A
 *   token weighs the product of the column counts of the assignments
 *   whose source may hold it: a source ends at the next ',' or ';' at its
 *   depth or at the ')' that closes its depth (reaching further only
 *   overestimates).
 *
 * - Depth.  Its serialiser and protobuf-c's unpacker (about 0.9 KB of
 *   stack a level) recurse once per tree level without a stack check,
 *   and left-deep chains are not bounded by the grammar: "SELECT
 *   1+1+...+1" of 100 KB overflows an 8 MB stack.  The depth of a
 *   bracketed level ((), [] or CASE ... END) is bounded by its set
 *   operations and joins (left-deep chains of whole clauses) plus its
 *   deepest segment, a segment being what lies between ',', AND, OR,
 *   WHEN, THEN, ELSE, ';' or those keywords (no operator chain crosses
 *   them): its tokens plus the depth of its deepest closed sub-level.
 *   A unit of that bound is at most three tree levels ("(SELECT" is six).
 */
enum {
	SHAPE_COPY_BUDGET = 100000,	/* extra tokens: about 0.1 s */
	SHAPE_DEPTH_BUDGET = 1000,	/* about 3000 levels, 3 MB of stack */
};

struct scan_level {
	size_t seg;		/* tokens of the current segment */
	size_t inner;		/* deepest sub-level closed in it */
	size_t segmax;		/* deepest segment so far */
	size_t chains;		/* UNION/INTERSECT/EXCEPT/JOIN */
	size_t commas;		/* directly at this level */
	bool is_case;		/* opened by CASE, closed by END */
	bool after_set;		/* '(' right after SET or ',' */
};

struct copy_mult {
	size_t depth;		/* of the SET clause */
	size_t weight;		/* copies of a token in its source */
};

struct text_scan {
	PgQuery__ScanToken *const *tok;
	size_t n_tok;
	struct scan_level *lv;	/* lv[0] is outside any bracket */
	struct copy_mult *mult;	/* active assignments, innermost last */
	size_t depth, n_mult, copies;
	bool too_deep;
};

static bool
is_comment(const PgQuery__ScanToken *t)
{
	return t->token == PG_QUERY__TOKEN__SQL_COMMENT ||
	       t->token == PG_QUERY__TOKEN__C_COMMENT;
}

/* End the assignments whose SET clause is at 'depth' or deeper. */
static void
copy_end(struct text_scan *s, size_t depth)
{
	while (s->n_mult > 0 && s->mult[s->n_mult - 1].depth >= depth)
		s->n_mult--;
}

/* After a ')' that closed "(a, b": if '=' follows, a source starts. */
static void
copy_start(struct text_scan *s, const struct scan_level *closed, size_t i)
{
	size_t k, w;

	if (!closed->after_set || closed->commas == 0)
		return;
	for (i++; i < s->n_tok && is_comment(s->tok[i]); i++)
		;
	if (i == s->n_tok || s->tok[i]->token != PG_QUERY__TOKEN__ASCII_61)
		return;
	k = closed->commas + 1;
	w = s->n_mult > 0 ? s->mult[s->n_mult - 1].weight : 1;
	w = w > SHAPE_COPY_BUDGET / k ? SHAPE_COPY_BUDGET + 1 : w * k;
	s->mult[s->n_mult].depth = s->depth;
	s->mult[s->n_mult++].weight = w;
}

/* The depth bound of a level (the bracket itself included). */
static size_t
level_depth(const struct scan_level *l)
{
	return l->chains + l->segmax + 1;
}

static void
level_update(struct text_scan *s, struct scan_level *l)
{
	if (l->seg + l->inner > l->segmax)
		l->segmax = l->seg + l->inner;
	if (level_depth(l) > SHAPE_DEPTH_BUDGET)
		s->too_deep = true;
}

static void
scan_open(struct text_scan *s, int prev, int tok)
{
	struct scan_level *l = &s->lv[++s->depth];

	memset(l, 0, sizeof(*l));
	l->is_case = tok == PG_QUERY__TOKEN__CASE;
	l->after_set = tok == PG_QUERY__TOKEN__ASCII_40 &&
		       (prev == PG_QUERY__TOKEN__SET ||
			prev == PG_QUERY__TOKEN__ASCII_44);
}

/* Close the top level; it counts as one deep token of its parent. */
static void
scan_close(struct text_scan *s, size_t i)
{
	struct scan_level closed = s->lv[s->depth];
	struct scan_level *parent = &s->lv[--s->depth];

	if (level_depth(&closed) > parent->inner)
		parent->inner = level_depth(&closed);
	level_update(s, parent);
	copy_end(s, s->depth + 1);
	copy_start(s, &closed, i);
}

/* Start a new segment; 'all' (';') also ends the chains. */
static void
scan_cut(struct scan_level *l, bool all)
{
	l->seg = 0;
	l->inner = 0;
	if (all)
		l->chains = 0;
}

static void
scan_token(struct text_scan *s, size_t i, int tok, int prev)
{
	struct scan_level *l = &s->lv[s->depth];

	switch (tok) {
	case PG_QUERY__TOKEN__ASCII_40:	/* ( */
	case PG_QUERY__TOKEN__ASCII_91:	/* [ */
	case PG_QUERY__TOKEN__CASE:
		scan_open(s, prev, tok);
		return;
	case PG_QUERY__TOKEN__ASCII_41:	/* ) */
	case PG_QUERY__TOKEN__ASCII_93:	/* ] */
		while (s->depth > 0 && s->lv[s->depth].is_case)
			scan_close(s, i);	/* an unclosed CASE: invalid */
		if (s->depth > 0)
			scan_close(s, i);
		return;
	case PG_QUERY__TOKEN__END_P:	/* also COMMIT, BEGIN ATOMIC's end */
		if (l->is_case) {
			scan_close(s, i);
			return;
		}
		break;
	case PG_QUERY__TOKEN__ASCII_44:	/* , */
		l->commas++;
		copy_end(s, s->depth);
		scan_cut(l, false);
		return;
	case PG_QUERY__TOKEN__ASCII_59:	/* ; (also inside CREATE RULE) */
		copy_end(s, s->depth);
		scan_cut(l, true);
		return;
	case PG_QUERY__TOKEN__AND:
	case PG_QUERY__TOKEN__OR:
	case PG_QUERY__TOKEN__WHEN:
	case PG_QUERY__TOKEN__THEN:
	case PG_QUERY__TOKEN__ELSE:
		scan_cut(l, false);
		return;
	case PG_QUERY__TOKEN__UNION:
	case PG_QUERY__TOKEN__INTERSECT:
	case PG_QUERY__TOKEN__EXCEPT:
	case PG_QUERY__TOKEN__JOIN:
		l->chains++;
		scan_cut(l, false);
		level_update(s, l);
		return;
	default:
		break;
	}
	l->seg++;
	level_update(s, l);
}

static bool
scan_walk(struct text_scan *s)
{
	int tok, prev = 0;
	size_t i;

	for (i = 0; i < s->n_tok; i++) {
		if (is_comment(s->tok[i]))
			continue;
		tok = s->tok[i]->token;
		scan_token(s, i, tok, prev);
		if (s->n_mult > 0)
			s->copies += s->mult[s->n_mult - 1].weight - 1;
		if (s->copies > SHAPE_COPY_BUDGET || s->too_deep)
			return true;
		prev = tok;
	}
	return false;
}

/*
 * True if parsing 'sql' would copy too much or nest too deep (see
 * above).  A text the lexer refuses is left to the parser, which
 * reports the error.
 */
bool
analysis_too_complex(const char *sql)
{
	PgQueryScanResult sr = pg_query_scan(sql);
	PgQuery__ScanResult *scan = NULL;
	struct text_scan s;
	bool over;

	memset(&s, 0, sizeof(s));
	if (!sr.error)
		scan = pg_query__scan_result__unpack(
			NULL, sr.pbuf.len, (const uint8_t *)sr.pbuf.data);
	pg_query_free_scan_result(sr);
	if (!scan)
		return false;
	s.tok = scan->tokens;
	s.n_tok = scan->n_tokens;
	s.lv = calloc(s.n_tok + 1, sizeof(*s.lv));
	s.mult = calloc(s.n_tok + 1, sizeof(*s.mult));
	/* Out of memory here, the parse would run out as well. */
	over = !s.lv || !s.mult || scan_walk(&s);
	free(s.lv);
	free(s.mult);
	pg_query__scan_result__free_unpacked(scan, NULL);
	return over;
}

static void
set_err(char *err, size_t errlen, const char *msg, int cursor)
{
	if (!err || errlen == 0)
		return;
	if (cursor > 0)
		snprintf(err, errlen, "%s at character %d", msg, cursor);
	else
		snprintf(err, errlen, "%s", msg);
}

/* A text not parsed: one UNKNOWN statement over all of it, overflowed. */
static int
unparsed(const char *sql, struct analysis *out, char *err, size_t errlen)
{
	struct analysis_stmt *st = calloc(1, sizeof(*st));

	if (!st) {
		set_err(err, errlen, "out of memory", 0);
		return -1;
	}
	st->kind = ANALYSIS_UNKNOWN;
	st->length = strlen(sql);
	st->tx_read_only = -1;
	st->overflow = true;
	out->stmts = st;
	out->n_stmts = 1;
	out->kind = ANALYSIS_UNKNOWN;
	out->overflow = true;
	out->fingerprint = analysis_fingerprint(sql);
	return 0;
}

int
analysis_parse(const char *sql, struct analysis *out, char *err,
	       size_t errlen)
{
	PgQueryProtobufParseResult pr;
	PgQuery__ParseResult *tree;
	struct shape_build b;
	size_t i, sqllen;

	memset(out, 0, sizeof(*out));
	memset(&b, 0, sizeof(b));
	if (analysis_too_complex(sql))
		return unparsed(sql, out, err, errlen);
	pr = pg_query_parse_protobuf(sql);
	if (pr.error) {
		set_err(err, errlen, pr.error->message ? pr.error->message
						       : "syntax error",
			pr.error->cursorpos);
		pg_query_free_protobuf_parse_result(pr);
		return -1;
	}
	tree = pg_query__parse_result__unpack(
		NULL, pr.parse_tree.len, (const uint8_t *)pr.parse_tree.data);
	pg_query_free_protobuf_parse_result(pr);
	if (!tree) {
		set_err(err, errlen, "out of memory", 0);
		return -1;
	}
	sqllen = strlen(sql);
	for (i = 0; i < tree->n_stmts && !b.oom; i++)
		analyse_stmt(&b, tree->stmts[i], sqllen);
	pg_query__parse_result__free_unpacked(tree, NULL);
	if (b.oom) {
		build_free(&b);
		set_err(err, errlen, "out of memory", 0);
		return -1;
	}
	finish(&b, out);
	out->fingerprint = analysis_fingerprint(sql);
	return 0;
}

void
analysis_free(struct analysis *a)
{
	if (!a)
		return;
	free(a->stmts);
	free(a->rels);
	free(a->funcs);
	free(a->preds);
	free(a->values);
	free(a->cols);
	free(a->text_pool);
	memset(a, 0, sizeof(*a));
}

uint64_t
analysis_fingerprint(const char *sql)
{
	PgQueryFingerprintResult r = pg_query_fingerprint(sql);
	uint64_t fp = r.error ? 0 : r.fingerprint;

	pg_query_free_fingerprint_result(r);
	return fp;
}

char *
analysis_normalize(const char *sql)
{
	PgQueryNormalizeResult r;
	char *s = NULL;

	if (analysis_too_complex(sql))
		return NULL;
	r = pg_query_normalize(sql);
	if (!r.error && r.normalized_query)
		s = strdup(r.normalized_query);
	pg_query_free_normalize_result(r);
	return s;
}

const char *
analysis_kind_name(enum analysis_kind kind)
{
	static const char *const names[] = {"read", "tx", "session",
					    "write", "ddl", "unknown"};

	if ((unsigned)kind < sizeof(names) / sizeof(*names))
		return names[kind];
	return "?";
}
