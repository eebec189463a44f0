"""ORM lookups compiled to SQL once, for the few that every API call makes.

Django builds a queryset's query tree and compiles it to SQL on every call, and for the lookups of
a detect call that costs 10-20 times what running the SQL costs: on SQLite the token lookup took
0.35 ms of CPU, of which 0.03 ms ran the query (docs/benchmarks.md, issue 15). A PreparedQuery
builds its queryset once per database connection with sample values standing for the real ones,
keeps the compiled SQL and the compiler's description of its columns, and from then on only runs
that SQL with the real values and builds the model instances as the ORM would (select_related
objects and annotations included). The database is asked on every call, as before: nothing is
cached but the SQL's text, so every answer is as fresh as the ORM's.

Only for queries whose SQL does not depend on the values: equality with integer and text columns.
"""

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import AutoField, Field, IntegerField, QuerySet
from django.db.models.query import get_related_populators

# Sample values, unlike anything a request sends, found again in the compiled SQL's parameters.
# Ints within a 32-bit column's range: Django compiles an out-of-range value to "no rows".
_INT_SAMPLE = 2_000_000_000
_STR_SAMPLE = "\x1fkenpin-prepared-sample-"


def _integer(field: Field) -> bool:
    return isinstance(getattr(field, "target_field", field), (IntegerField, AutoField))


class _Compiled:
    def __init__(self, queryset: QuerySet, samples: dict, alias: str):
        compiler = queryset.query.get_compiler(using=alias)
        self.sql, params = compiler.as_sql()
        # Each parameter: the name of the value it stands for, or a constant of the query. (A
        # backend may wrap an int, psycopg's Int4: equal to the int all the same.)
        by_sample = {v: name for name, v in samples.items()}
        self.slots = [
            (by_sample[p], None) if isinstance(p, int | str) and p in by_sample else (None, p) for p in params
        ]
        missing = set(samples) - {name for name, _ in self.slots}
        if missing:
            raise ImproperlyConfigured(f"A prepared query's SQL does not use the values {sorted(missing)}.")
        self.compiler = compiler
        klass_info = compiler.klass_info
        self.model = klass_info["model"]
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        self.fields = slice(start, end)
        self.init_list = [f[0].target.attname for f in compiler.select[start:end]]
        self.populators = get_related_populators(klass_info, compiler.select, alias)
        self.annotations = compiler.annotation_col_map
        self.converters = compiler.get_converters([s[0] for s in compiler.select[: compiler.col_count]])


class PreparedQuery:
    """`build(**values)` -> the queryset of one lookup; `fields` names the model field each value
    is compared with (the ORM's preparation of the value for that column is used).

    `get(**values)` answers what `build(**values).get()` would: the one row's instance, or the
    model's DoesNotExist (MultipleObjectsReturned for more than one).
    """

    def __init__(self, build: Callable[..., QuerySet], **fields: Field):
        self.build = build
        self.fields = fields
        self.samples = {
            name: _INT_SAMPLE + n if _integer(field) else f"{_STR_SAMPLE}{n}"
            for n, (name, field) in enumerate(fields.items())
        }

    def _compiled(self, alias: str) -> _Compiled:
        # Per connection, which is per thread: the compiler holds its connection.
        connection = connections[alias]
        cache = connection.__dict__.setdefault("_kenpin_prepared", {})
        compiled = cache.get(id(self))
        if compiled is None:
            compiled = cache[id(self)] = _Compiled(self.build(**self.samples).order_by(), self.samples, alias)
        return compiled

    def get(self, *, using: str = DEFAULT_DB_ALIAS, **values):
        if set(values) != set(self.fields):
            raise TypeError(f"A prepared query takes exactly the values {sorted(self.fields)}.")
        connection = connections[using]
        compiled = self._compiled(using)
        params = {}
        for name, field in self.fields.items():
            value = field.get_prep_value(values[name])  # int(value), str(value)... as the ORM does
            if _integer(field):
                # Like the ORM, a value no row's column can hold matches no row.
                low, high = connection.ops.integer_field_range(
                    getattr(field, "target_field", field).get_internal_type()
                )
                if not (low is None or low <= value) or not (high is None or value <= high):
                    raise compiled.model.DoesNotExist(
                        f"{compiled.model._meta.object_name} matching query does not exist."
                    )
            params[name] = field.get_db_prep_value(value, connection, prepared=True)
        with connection.cursor() as cursor:
            cursor.execute(
                compiled.sql, [params[name] if name is not None else constant for name, constant in compiled.slots]
            )
            rows = cursor.fetchmany(2)
        if not rows:
            raise compiled.model.DoesNotExist(f"{compiled.model._meta.object_name} matching query does not exist.")
        if len(rows) > 1:
            raise compiled.model.MultipleObjectsReturned(f"More than one {compiled.model._meta.object_name} matched.")
        row = rows[0]
        if compiled.converters:
            row = next(iter(compiled.compiler.apply_converters([row], compiled.converters)))
        obj = compiled.model.from_db(using, compiled.init_list, row[compiled.fields])
        for populator in compiled.populators:
            populator.populate(row, obj)
        for attr, position in compiled.annotations.items():
            setattr(obj, attr, row[position])
        return obj
